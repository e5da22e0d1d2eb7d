#!/usr/bin/env bash
# Issue 7: kvprime against the seed's pipeline on HF transformers, in ONE device call (GPU machine,
# from the repository root, .gpu carried: deps + tok.tar.xz; see bench/README.md):
#   1. tokenizers from .gpu/tok.tar.xz; the benchmark data (bench/make_bench_data.py);
#   2. in the background, a random-weight 7.24B Mistral-7B-Instruct-v0.2-shaped checkpoint (bf16,
#      Llama-2 tokenizer, seed 0) -> $MODEL, while kvprime's bench_seed builds (CPU vs GPU work);
#   3. kvprime: bench_seed (batch-1 seed loop on SEED_SAMPLES samples, batched pipeline on all);
#   4. HF: bench/hf_seed_baseline.py (seed loop at batch 1, hf_alt: the same NLLs by a second HF path
#      that differs only in rounding, HF batched forward, GEMM peak);
#   5. the float32 exactness test, only when >= 120 s are left: both sides in float32 on the same
#      checkpoint (its bf16 weights upcast, ~29 GB on the GPU) on the first F32_SAMPLES samples,
#      kvprime (bench_seed --dtype float32, one chunk) then HF (--dtype float32 --only-pipeline, TF32 off);
#   6. bench/compare.py: NLL agreement (float32 test; bf16 test calibrated on HF's own rounding) and
#      the tables (printed last), results.md for RESULTS.md.
# The benchmarks run one after the other, alone on the GPU, after the build has finished.
# Everything lands in $OUT (logs, JSONs, results.md, steps.txt). A failed or skipped step is reported
# and the rest goes on where it can; the exit status is 1 if anything failed (compare: NLLs disagree).
# Environment: BUDGET_S (570: the call is limited to 600 s), N_SAMPLES (256), HF_SAMPLES (256),
# SEED_SAMPLES (32), KV_BATCH (bench_seed's --batch; its default when unset), HF_ARGS (more options for
# hf_seed_baseline.py, e.g. "--bare-ids joint"; given to both HF runs, before the float32 run's own),
# F32_SAMPLES (32; 0 skips the float32 test), MODEL (/tmp/mistral7b, reused on a warm machine),
# SKIP_BUILD=1 / SKIP_KVPRIME=1 / SKIP_HF=1 / SKIP_F32=1 (a second call on the still-warm machine).
set -uo pipefail
T0=$(date +%s)
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
BUDGET_S=${BUDGET_S:-570}
N_SAMPLES=${N_SAMPLES:-256}
HF_SAMPLES=${HF_SAMPLES:-256}
SEED_SAMPLES=${SEED_SAMPLES:-32}
F32_SAMPLES=${F32_SAMPLES:-32}
KV_BATCH=${KV_BATCH:-}
read -r -a HF_EXTRA <<< "${HF_ARGS:-}"  # word-split on purpose: several options in one variable
MODEL=${MODEL:-/tmp/mistral7b}
DATA=$OUT/bench_data.jsonl
STEPS=$OUT/steps.txt
: > "$STEPS"
rm -f "$OUT/kvprime_f32.json" "$OUT/hf_f32.json"  # compare.py takes the float32 test from these
status=0
problems=()

left() { echo $(( BUDGET_S - ($(date +%s) - T0) )); }
begin() { STEP=$1; STEP_T=$(date +%s); echo "=== $1 (t=$(( STEP_T - T0 ))s, $(left)s left)"; }
finish() {  # finish RC: records the step's time and status
  local rc=$1
  printf '%-34s %4ds  rc=%s\n' "$STEP" $(( $(date +%s) - STEP_T )) "$rc" >> "$STEPS"
  if [ "$rc" != 0 ]; then status=1; problems+=("$STEP: rc $rc"); fi
}
skip() {
  echo "=== SKIPPED $1: $2"
  printf '%-34s  skipped: %s\n' "$1" "$2" >> "$STEPS"
  status=1; problems+=("$1 skipped: $2")
}
model_ready() { [ -f "$MODEL/.complete" ]; }

# ---- 1. environment, tokenizers, data ---------------------------------------------------------
begin "setup (tokenizers, data)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1
python3 -c 'import sys, torch, transformers, tokenizers
print("python", sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__,
      "tokenizers", tokenizers.__version__)' > "$OUT/versions.txt" 2>&1
cat "$OUT/gpu.txt" "$OUT/versions.txt"
rc=0
if [ -f .gpu/tok.tar.xz ]; then tar xJf .gpu/tok.tar.xz || rc=1
elif [ ! -f third_party/npm/llama2/tokenizer.json ]; then
  echo "no .gpu/tok.tar.xz and no third_party/npm/llama2"; rc=1
fi
python3 bench/make_bench_data.py --n "$N_SAMPLES" --out "$DATA" > "$OUT/data.log" 2>&1 || rc=1
cat "$OUT/data.log"
finish $rc

# ---- 2. the 7B checkpoint (background) while kvprime builds ----------------------------------
MODEL_PID=
if model_ready; then
  echo "=== model: reusing $MODEL"
else
  rm -rf "$MODEL"
  MODEL_T=$(date +%s)
  # .complete marks a finished checkpoint, so that a warm machine reuses it and never a partial one.
  ( timeout 300 python3 tools/make_random_hf_model.py \
      --config tests/fixtures/configs/mistral-7b-instruct-v0.2.config.json \
      --tokenizer third_party/npm/llama2 --dtype bfloat16 --seed 0 --out "$MODEL" &&
    touch "$MODEL/.complete" ) > "$OUT/model.log" 2>&1 &
  MODEL_PID=$!
fi

BUILD_OK=1  # a failed build must not leave a stale bench_seed of an earlier call to be measured
if [ "${SKIP_BUILD:-0}" = 1 ]; then
  echo "=== build skipped (SKIP_BUILD=1)"
elif (( $(left) < 240 )); then
  skip "build kvprime (bench_seed)" "only $(left)s left"
  BUILD_OK=0
else
  begin "build kvprime (bench_seed)"
  TORCH_PREFIX=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
  {
    cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVPRIME_BUILD_TESTS=OFF \
      -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PWD/.gpu/deps" -DCMAKE_CUDA_ARCHITECTURES=90 &&
    timeout $(( $(left) - 200 )) cmake --build build-gpu --target bench_seed -j "$(nproc)"
  } > "$OUT/build.log" 2>&1
  rc=$?
  if (( rc != 0 )); then BUILD_OK=0; grep -E "error|Error" "$OUT/build.log" | head -30; fi
  finish $rc
fi

if [ -n "$MODEL_PID" ]; then
  begin "7B model (waited for)"
  wait "$MODEL_PID"
  rc=$?
  tail -1 "$OUT/model.log"
  echo "model: ready $(( $(date +%s) - MODEL_T ))s after it was started"
  finish $rc
fi
model_ready || { status=1; problems+=("no model at $MODEL (see model.log)"); }

# ---- 3. kvprime -------------------------------------------------------------------------------
if [ "${SKIP_KVPRIME:-0}" = 1 ]; then
  echo "=== kvprime skipped (SKIP_KVPRIME=1)"
elif (( !BUILD_OK )) || [ ! -x build-gpu/bench/bench_seed ] || ! model_ready; then
  skip "kvprime bench_seed" "no (fresh) build-gpu/bench/bench_seed or no model"
elif (( $(left) < 150 )); then
  skip "kvprime bench_seed" "only $(left)s left"
else
  begin "kvprime bench_seed"
  # Leaves >= 120 s for the HF baseline.
  timeout $(( $(left) - 120 )) build-gpu/bench/bench_seed --model "$MODEL" --dtype bfloat16 --device cuda \
    --data "$DATA" --samples "$N_SAMPLES" --seed-samples "$SEED_SAMPLES" ${KV_BATCH:+--batch "$KV_BATCH"} \
    --json-out "$OUT/kvprime.json" > "$OUT/kvprime.log" 2>&1
  rc=$?
  tail -4 "$OUT/kvprime.log"
  finish $rc
fi

# ---- 4. HF transformers -----------------------------------------------------------------------
if [ "${SKIP_HF:-0}" = 1 ]; then
  echo "=== HF skipped (SKIP_HF=1)"
elif ! model_ready; then
  skip "HF seed baseline" "no model"
elif (( $(left) < 90 )); then
  skip "HF seed baseline" "only $(left)s left"
else
  begin "HF seed baseline"
  # The script stops its sample loop in time to finish (b), (c) and the JSON within its budget;
  # timeout is the backstop.
  HF_LEFT=$(( $(left) - 15 ))
  timeout "$HF_LEFT" python3 bench/hf_seed_baseline.py --model "$MODEL" --data "$DATA" \
    --samples "$HF_SAMPLES" --json-out "$OUT/hf.json" --time-budget-s $(( HF_LEFT - 10 )) "${HF_EXTRA[@]}" \
    > "$OUT/hf.log" 2>&1
  rc=$?
  grep -E "^\[hf_seed_baseline" "$OUT/hf.log" | tail -12
  (( rc != 0 )) && tail -20 "$OUT/hf.log"
  finish $rc
fi

# ---- 5. float32 exactness test ----------------------------------------------------------------
# After the bf16 steps (they come first), and only with >= 120 s left: each side takes < 60 s for 32
# samples, loading included (~10 s for the 14.5 GB checkpoint, upcast to ~29 GB on the GPU).
if [ "${SKIP_F32:-0}" = 1 ] || [ "$F32_SAMPLES" = 0 ]; then
  echo "=== float32 test skipped (SKIP_F32=1 or F32_SAMPLES=0)"
elif ! model_ready; then
  skip "float32 test" "no model"
elif (( $(left) < 120 )); then
  skip "float32 test" "only $(left)s left (needs 120)"
else
  if (( !BUILD_OK )) || [ ! -x build-gpu/bench/bench_seed ]; then
    skip "kvprime bench_seed float32" "no (fresh) build-gpu/bench/bench_seed"
  else
    begin "kvprime bench_seed float32"
    # Leaves >= 60 s for HF's float32 run. One chunk of F32_SAMPLES; no batch-1 loop.
    timeout $(( $(left) - 60 )) build-gpu/bench/bench_seed --model "$MODEL" --dtype float32 --device cuda \
      --data "$DATA" --samples "$F32_SAMPLES" --seed-samples 0 --batch "$F32_SAMPLES" \
      --json-out "$OUT/kvprime_f32.json" > "$OUT/kvprime_f32.log" 2>&1
    rc=$?
    tail -3 "$OUT/kvprime_f32.log"
    finish $rc
  fi
  if (( $(left) < 40 )); then
    skip "HF float32" "only $(left)s left"
  else
    begin "HF float32"
    HF_LEFT=$(( $(left) - 10 ))
    # HF_EXTRA first: the float32 run's own options win (argparse keeps the last).
    timeout "$HF_LEFT" python3 bench/hf_seed_baseline.py --model "$MODEL" --data "$DATA" "${HF_EXTRA[@]}" \
      --samples "$F32_SAMPLES" --dtype float32 --only-pipeline --json-out "$OUT/hf_f32.json" \
      --time-budget-s $(( HF_LEFT - 5 )) > "$OUT/hf_f32.log" 2>&1
    rc=$?
    grep -E "^\[hf_seed_baseline" "$OUT/hf_f32.log" | tail -5
    (( rc != 0 )) && tail -20 "$OUT/hf_f32.log"
    finish $rc
  fi
fi

# ---- 6. compare -------------------------------------------------------------------------------
begin "compare"
F32_ARGS=()
if [ -f "$OUT/kvprime_f32.json" ] || [ -f "$OUT/hf_f32.json" ]; then  # one missing: compare fails the test
  F32_ARGS=(--hf-f32 "$OUT/hf_f32.json" --kvprime-f32 "$OUT/kvprime_f32.json")
fi
python3 bench/compare.py --hf "$OUT/hf.json" --kvprime "$OUT/kvprime.json" "${F32_ARGS[@]}" \
  --gpu-file "$OUT/gpu.txt" --md-out "$OUT/results.md" > "$OUT/compare.txt" 2>&1
finish $?

echo
echo "=== steps (total $(( $(date +%s) - T0 ))s)"
cat "$STEPS"
for p in "${problems[@]}"; do echo "PROBLEM: $p"; done
echo
cat "$OUT/compare.txt"
exit $status
