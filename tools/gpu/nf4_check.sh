#!/usr/bin/env bash
# Issue 11 on the GPU machine (device tool, repository root, .gpu carried): builds the nf4 tests
# against the machine's PyTorch 2.x (CUDA) and runs them there (the CUDA quantizer case included).
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
B=build-gpu-nf4
cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PWD/.gpu/deps" \
  -DKVPRIME_GTEST_SOURCE_DIR="$PWD/.gpu/deps/src/googletest" \
  -DCMAKE_CUDA_ARCHITECTURES=90 >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; exit 1; }
cmake --build $B -j "$(nproc)" --target nf4_test_nf4 >"$OUT/build.log" 2>&1 ||
  { grep -E "error" -A3 "$OUT/build.log" | head -40; exit 1; }
(cd $B && ./tests/nf4_test_nf4 2>&1 | tee "$OUT/nf4.log" | tail -25)
