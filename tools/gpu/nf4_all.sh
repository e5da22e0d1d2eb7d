#!/usr/bin/env bash
# Issue 11 on the GPU machine in one call: the nf4 tests (tools/gpu/nf4_check.sh) then the 7B memory
# and speed measurement (tools/gpu/nf4_7b.sh). Carry .gpu and third_party/npm/llama2.
set -uo pipefail
bash tools/gpu/nf4_check.sh 2>&1 | grep -E "OK|FAILED|PASSED|nf4  |Failure|error" | head -30
bash tools/gpu/nf4_7b.sh 2>&1 | tail -6
