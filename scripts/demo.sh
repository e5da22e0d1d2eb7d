#!/usr/bin/env bash
# The main job: set up and build, then run the demo priming experiment (examples/demo.toml) on the
# bundled demo model and dataset — 8 conditions (bare, oracle, surrogate corrected / uncorrected,
# random words, RoPE round-trip noise, values-only hybrid, full context) — and write its report.
# Re-running resumes (nothing is recomputed); `scripts/demo.sh --new-run` starts over.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_DIR=${KVPRIME_BUILD_DIR:-build}
KV="$BUILD_DIR/kvprime"

echo "== kvprime explain examples/demo.toml (sample 0)"
"$KV" explain examples/demo.toml --sample 0
echo "== kvprime run examples/demo.toml"
"$KV" run examples/demo.toml "$@"
echo "== results (out/demo/report.md; open out/demo/report.html for the plots)"
sed -n '/^| condition | n |/,/^$/p' out/demo/report.md
