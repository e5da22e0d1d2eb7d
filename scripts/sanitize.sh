#!/usr/bin/env bash
# The sanitizer stage of the README's test command (scripts/test.sh runs it after the normal suite):
#   1. builds everything with clang, AddressSanitizer + UndefinedBehaviorSanitizer and libFuzzer
#      coverage into ${KVPRIME_SANITIZE_BUILD_DIR:-build-asan} (-DKVPRIME_SANITIZE=ON),
#   2. runs the whole CTest suite there,
#   3. runs every fuzz target for ${KVPRIME_FUZZ_SECONDS:-30} s from its committed corpus.
# Any sanitizer report, test failure or fuzzer crash fails the script. Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${KVPRIME_SANITIZE_BUILD_DIR:-build-asan}
JOBS=${KVPRIME_JOBS:-$(nproc)}
FUZZ_SECONDS=${KVPRIME_FUZZ_SECONDS:-30}

# Sanitizer options (tools/sanitizers/ holds the suppression files, each entry with its reason):
# - detect_leaks=1 with lsan.supp: LibTorch, OpenBLAS and libgomp keep process-lifetime singletons
#   that LeakSanitizer would report at exit; only those libraries are suppressed.
# - detect_container_overflow=0: std::vector annotations are only consistent when every user of a
#   container is instrumented; vectors crossing into the uninstrumented LibTorch give false reports.
# - halt_on_error / abort_on_error: the first report fails the test that caused it.
export ASAN_OPTIONS="detect_leaks=1:detect_container_overflow=0:halt_on_error=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$PWD/tools/sanitizers/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$PWD/tools/sanitizers/ubsan.supp${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

t0=$(date +%s)
CC=clang CXX=clang++ cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKVPRIME_SANITIZE=ON >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS"
t1=$(date +%s)
echo "sanitize: built in $((t1 - t0)) s"

if (($#)); then
  ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" "$@"
else
  # Every test binary once, all its cases in one process, $JOBS at a time. (ctest starts one
  # process per test case; under ASan each start-up, LibTorch's included, costs 2-3 s on the
  # 2-core machines: 580 cases took ~22 minutes that way.) Working directory as under ctest.
  find "$(realpath "$BUILD_DIR")/tests" -maxdepth 1 -type f -executable -name '*_test_*' | sort |
    xargs -P "$JOBS" -I{} sh -c 'cd "$(dirname "$1")" && "$1" --gtest_brief=1 >"$1.log" 2>&1 ||
      { echo "sanitize: FAILED $1:"; tail -80 "$1.log"; exit 1; }' _ {} ||
    { echo "sanitize: the test suite failed under ASan + UBSan (logs: $BUILD_DIR/tests/*.log)"; exit 1; }
fi
t2=$(date +%s)
echo "sanitize: test suite under ASan + UBSan passed in $((t2 - t1)) s"

# Fuzz smoke: each target from its corpus (new inputs go to a scratch copy, not the committed one).
status=0
for corpus in fuzz/corpus/*/; do
  target=$(basename "$corpus")
  work=$(mktemp -d)
  cp -r "$corpus"/. "$work"/
  dict=()
  [ -f "fuzz/$target.dict" ] && dict=(-dict="fuzz/$target.dict")
  # -seed=1: the same mutation sequence on every run, so CI explores a prefix of what was explored
  # (and fixed) while developing, instead of failing at random on whatever a new seed finds.
  if ! "$BUILD_DIR/fuzz/fuzz_$target" "$work" "${dict[@]}" -seed=1 -max_total_time="$FUZZ_SECONDS" \
      -rss_limit_mb=4096 -timeout=30 -artifact_prefix="$BUILD_DIR/fuzz/crash-$target-" \
      -print_final_stats=1 >"$BUILD_DIR/fuzz/$target.log" 2>&1; then
    echo "sanitize: fuzz_$target FAILED (input saved as $BUILD_DIR/fuzz/crash-$target-*):"
    tail -40 "$BUILD_DIR/fuzz/$target.log"
    status=1
  else
    echo "sanitize: fuzz_$target: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$BUILD_DIR/fuzz/$target.log" | awk '{print $2}') inputs in ${FUZZ_SECONDS} s, no crash"
  fi
  rm -rf "$work"
done
echo "sanitize: fuzz smoke done in $(( $(date +%s) - t2 )) s"
exit $status
