#!/usr/bin/env bash
# One device call that does everything the GPU machine is needed for, in parallel where the work
# uses different resources: trains the demo model on the GPU (background), writes the HF tokenizer
# goldens, builds kvprime against the machine's CUDA PyTorch and runs the whole test suite there,
# then times HF tokenizers against ours. Results land in $OUT (at most 8 files come back).
# Needs carried: .gpu (deps + tok.tar.xz) and data/corpus.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
TRAIN_MINUTES=${TRAIN_MINUTES:-5.5}
tar xJf .gpu/tok.tar.xz
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1

( if [ "$TRAIN_MINUTES" != 0 ]; then
    python3 tools/train_demo_model.py --corpus data/corpus --dataset data/demo/qa.jsonl \
      --out models/demo --minutes "$TRAIN_MINUTES" --deadline-minutes 8 > "$OUT/train.log" 2>&1
    tar czf - models/demo | split -b 15m - "$OUT/demo.tgz.part-"
  fi ) &
TRAIN_PID=$!

{
  echo "=== tokenizer goldens"
  python3 tools/make_tokenizer_goldens.py && tar czf "$OUT/goldens.tgz" tests/fixtures/tokenizer/*.golden.json
  echo "=== build + ctest (CUDA)"
  tools/gpu/run_checks.sh --no-fixtures
  cp "$OUT/ctest.log" "$OUT/ctest_full.log" 2>/dev/null
  echo "=== tokenizer speed: kvprime vs HF tokenizers (Rust)"
  ./build-gpu/bench/bench_tokenizer --corpus-out /tmp/corpus.json --json-out /tmp/cpp.json && \
    python3 tools/bench_tokenizer_hf.py --corpus /tmp/corpus.json --cpp-results /tmp/cpp.json
} > "$OUT/checks.log" 2>&1
rm -f "$OUT/cmake.log" "$OUT/build.log" "$OUT/ctest.log"
wait $TRAIN_PID
tail -5 "$OUT/train.log" 2>/dev/null
grep -E "tests passed|tests failed|FAILED|ratio|MB/s" "$OUT/checks.log" | tail -30
ls -la "$OUT"
