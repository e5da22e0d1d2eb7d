#!/usr/bin/env bash
# One device call for the seed library (issue 5), run from the repository root on the GPU machine
# with .gpu carried (deps + tok.tar.xz):
#   1. HF golden of the seed's functions on the demo model (tools/make_seed_golden.py) and, when
#      present, scipy references for the statistics (tools/stats_reference.py) -> $OUT/golden.tgz;
#   2. builds kvprime against the machine's CUDA PyTorch and runs the whole suite (CUDA cases too);
#   3. a 7B-shaped bf16 model (Mistral-7B-Instruct-v0.2 config, random weights, Llama-2
#      tokenizer): bench_seed's structural checks and timings, in bf16 on CUDA -> $OUT/seed_7b.json.
# Logs land in $OUT; the last lines printed are a summary. `--bench-only` skips 1-2 (a second call on
# the still-warm machine, when one call's 10 minutes do not hold everything).
set -uo pipefail
BENCH_ONLY=0; [ "${1:-}" = "--bench-only" ] && BENCH_ONLY=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
tar xJf .gpu/tok.tar.xz
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
status=0
if ((!BENCH_ONLY)); then
{
  echo "=== seed golden ($(date +%T))"
  python3 tools/make_seed_golden.py --out tests/fixtures/seed_golden || status=1
  if [ -f tools/stats_reference.py ]; then
    echo "=== stats reference"
    python3 tools/stats_reference.py --out tests/fixtures/stats/reference.json || status=1
  fi
  tar czf "$OUT/golden.tgz" $(ls -d tests/fixtures/seed_golden tests/fixtures/stats 2>/dev/null)
} > "$OUT/golden.log" 2>&1
tail -5 "$OUT/golden.log"

# The 7B checkpoint is written while kvprime builds (GPU vs CPU work).
( python3 tools/make_random_hf_model.py \
    --config tests/fixtures/configs/mistral-7b-instruct-v0.2.config.json \
    --tokenizer third_party/npm/llama2 --dtype bfloat16 --out /tmp/mistral7b > "$OUT/model7b.log" 2>&1 ) &
MODEL_PID=$!

tools/gpu/run_checks.sh --no-fixtures > "$OUT/checks.log" 2>&1 || status=1
mv "$OUT/ctest.log" "$OUT/ctest_full.log" 2>/dev/null
rm -f "$OUT/cmake.log" "$OUT/build.log"
grep -E "tests passed|tests failed|\*\*\*Failed|Failed  " "$OUT/checks.log" "$OUT/ctest_full.log" | tail -20
wait $MODEL_PID || status=1
fi
[ -f /tmp/mistral7b/config.json ] || python3 tools/make_random_hf_model.py \
    --config tests/fixtures/configs/mistral-7b-instruct-v0.2.config.json \
    --tokenizer third_party/npm/llama2 --dtype bfloat16 --out /tmp/mistral7b > "$OUT/model7b.log" 2>&1
tail -2 "$OUT/model7b.log"
if [ -x build-gpu/bench/bench_seed ] && [ -f /tmp/mistral7b/config.json ]; then
  echo "=== bench_seed 7B bf16 cuda"
  build-gpu/bench/bench_seed --model /tmp/mistral7b --dtype bfloat16 --device cuda \
    --samples 64 --batch 32 --json-out "$OUT/seed_7b.json" 2>&1 | tee "$OUT/seed_7b.log" || status=1
  echo "=== bench_seed demo float32 cuda"
  build-gpu/bench/bench_seed --dtype float32 --device cuda --samples 64 --batch 32 \
    --json-out "$OUT/seed_demo_cuda.json" 2>&1 | tee -a "$OUT/seed_7b.log" || status=1
fi
echo "=== done (status $status)"
exit $status
