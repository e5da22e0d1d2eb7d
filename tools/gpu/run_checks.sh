#!/usr/bin/env bash
# Runs on the GPU machine (device tool), from the repository root, with .gpu/ carried:
#   1. HF reference fixtures (transformers there is the reference): parity models, RoPE
#      frequencies, tokenizer goldens — whichever generator scripts exist;
#   2. builds kvprime against the machine's PyTorch 2.x (CUDA) and runs the test suite there,
#      which adds the CUDA cases of the parity tests;
#   3. leaves logs and a tarball of the generated fixtures in $OUT.
# Usage: tools/gpu/run_checks.sh [--no-fixtures] [--no-build]
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
FIXTURES=1; BUILD=1
for a in "$@"; do
  case $a in --no-fixtures) FIXTURES=0 ;; --no-build) BUILD=0 ;; esac
done
status=0
step() { echo "=== $* ($(date +%T))"; }

if ((FIXTURES)); then
  step "versions"
  python3 -c 'import torch, transformers, tokenizers; print("torch", torch.__version__, "transformers", transformers.__version__, "tokenizers", tokenizers.__version__)'
  if [ -f tools/make_parity_fixtures.py ]; then
    step "parity fixtures"
    python3 tools/make_parity_fixtures.py --out tests/fixtures/parity --device cpu 2>&1 | tee "$OUT/parity_fixtures.log" || status=1
  fi
  if [ -f tools/dump_rope_reference.py ]; then
    step "rope reference"
    python3 tools/dump_rope_reference.py 2>&1 | tee "$OUT/rope_reference.log" || status=1
  fi
  if [ -f tools/make_tokenizer_goldens.py ] && [ -d third_party/npm ]; then
    step "tokenizer goldens"
    python3 tools/make_tokenizer_goldens.py 2>&1 | tee "$OUT/tokenizer_goldens.log" || status=1
  fi
  tar czf "$OUT/fixtures.tgz" $(ls -d tests/fixtures/parity tests/fixtures/rope tests/fixtures/tokenizer 2>/dev/null)
fi

if ((BUILD)); then
  step "build (PyTorch $(python3 -c 'import torch;print(torch.__version__)'))"
  TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PWD/.gpu/deps" \
    -DKVPRIME_GTEST_SOURCE_DIR="$PWD/.gpu/deps/src/googletest" \
    -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
  cmake --build build-gpu -j "$(nproc)" >"$OUT/build.log" 2>&1 || { grep -E "error|Error" "$OUT/build.log" | head -40; exit 1; }
  step "ctest"
  ctest --test-dir build-gpu --output-on-failure -j 8 --timeout 600 -E "${KVPRIME_CTEST_EXCLUDE:-^$}" >"$OUT/ctest.log" 2>&1 || status=1
  grep -E "tests passed|tests failed|\*\*\*Failed|Not Run|SKIPPED" "$OUT/ctest.log" | tail -40
fi
step "done (status $status)"
exit $status
