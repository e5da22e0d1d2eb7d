#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the test suite, then the sanitizer stage (scripts/sanitize.sh).
# Extra arguments go to ctest (both times), e.g. `scripts/test.sh -L parity`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_DIR=${KVPRIME_BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${KVPRIME_JOBS:-$(nproc)}" "$@"
# Then the whole suite again under AddressSanitizer + UBSan, and a fuzz smoke of every parser
# (scripts/sanitize.sh). KVPRIME_SKIP_SANITIZE=1 skips it (a quick local run).
if [ "${KVPRIME_SKIP_SANITIZE:-0}" != 1 ]; then
  scripts/sanitize.sh "$@"
fi
