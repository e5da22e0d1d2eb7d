#!/usr/bin/env bash
# Issue 11 on the GPU machine: the 7B memory and speed of NF4 vs bf16 weights (tools/gpu/nf4_7b.py).
# Carry .gpu and third_party/npm/llama2. Builds the Python extension (tools/gpu/python_check.sh's
# build, no tests) while the random 7.24B checkpoint is written.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
source tools/gpu/mistral7b.sh
start_mistral7b
PYTEST_ARGS="-k nothing_at_all" bash tools/gpu/python_check.sh > "$OUT/build.txt" 2>&1 || { tail -20 "$OUT/build.txt"; }
wait_mistral7b
PYTHONPATH=$PWD/build-gpu-py/python python3 tools/gpu/nf4_7b.py --model "$MODEL" ${NF4_7B_ARGS:-} 2>&1 | tee "$OUT/nf4_7b.txt"
