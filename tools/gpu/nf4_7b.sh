#!/usr/bin/env bash
# Issue 11 on the GPU machine: the 7B memory and speed of NF4 vs bf16 weights (tools/gpu/nf4_7b.py).
# Carry .gpu and third_party/npm/llama2. Builds the Python extension (tools/gpu/python_check.sh's
# build, no tests) while the random 7.24B checkpoint is written.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
MODEL=${MODEL:-/tmp/mistral7b}
if [ ! -f "$MODEL/.complete" ]; then
  ( python3 tools/make_random_hf_model.py --config tests/fixtures/configs/mistral-7b-instruct-v0.2.config.json \
      --tokenizer third_party/npm/llama2 --dtype bfloat16 --seed 0 --out "$MODEL" && touch "$MODEL/.complete" ) \
    > "$OUT/model.log" 2>&1 &
  MP=$!
fi
PYTEST_ARGS="-k nothing_at_all" bash tools/gpu/python_check.sh > "$OUT/build.txt" 2>&1 || { tail -20 "$OUT/build.txt"; }
[ -n "${MP:-}" ] && wait $MP
tail -2 "$OUT/model.log" 2>/dev/null
PYTHONPATH=$PWD/build-gpu-py/python python3 tools/gpu/nf4_7b.py --model "$MODEL" ${NF4_7B_ARGS:-} 2>&1 | tee "$OUT/nf4_7b.txt"
