#!/usr/bin/env bash
# Quick GPU probe (one device call, .gpu carried): builds bench_seed and the CUDA test binaries,
# times the pipeline at several chunk sizes with the phase profile, and runs the CUDA tests
# (parity fixtures on CUDA, fused kernels, rotary). Logs in $OUT.
set -u
tar xJf .gpu/tok.tar.xz
python3 bench/make_bench_data.py --n 256 --out /tmp/bd.jsonl > /dev/null
( python3 tools/make_random_hf_model.py --config tests/fixtures/configs/mistral-7b-instruct-v0.2.config.json --tokenizer third_party/npm/llama2 --dtype bfloat16 --seed 0 --out /tmp/m7 > $OUT/model.log 2>&1 ) &
T0=$(date +%s)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)');$PWD/.gpu/deps" > $OUT/cmake.log 2>&1 || tail -20 $OUT/cmake.log
cmake --build build-gpu -j16 --target bench_seed parity_test_forward_parity unit_test_fused_ops unit_test_rope > $OUT/build.log 2>&1 || grep -E "error" $OUT/build.log | head -20
echo "build $(( $(date +%s) - T0 ))s"
wait
build-gpu/bench/bench_seed --model /tmp/m7 --dtype bfloat16 --device cuda --data /tmp/bd.jsonl --samples 256 --seed-samples 16 --batch 32,64,128,256 --json-out $OUT/kv.json > $OUT/kv.log 2>&1; echo "bench rc $?"
cat $OUT/kv.log
cd build-gpu && OMP_NUM_THREADS=2 ctest -R "_cuda|Cuda|Fused" -j4 --timeout 200 > $OUT/ctest.log 2>&1; grep -E "tests passed|tests failed|Failed|Skipped" $OUT/ctest.log | sed 's/# GetParam.*//' | head -30
