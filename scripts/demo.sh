#!/usr/bin/env bash
# The main job, until the experiment runner exists (issue 6): set up and build, then run a
# committed fixture model end to end through the KV cache — resolve its config, greedy-generate,
# and score a continuation through a prefilled cache.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_DIR=${KVPRIME_BUILD_DIR:-build}
KV="$BUILD_DIR/kvprime"
MODEL=${KVPRIME_DEMO_MODEL:-models/demo}

echo "== kvprime info $MODEL"
"$KV" info "$MODEL"
echo "== greedy generation (float32, cpu)"
"$KV" generate -m "$MODEL" --ids 1,17,42,99,7 -n 12
echo "== score a continuation through the cache"
"$KV" score -m "$MODEL" --context-ids 1,17,42,99,7,250,31 --continuation-ids 12,88,4,301
echo "== the same in bfloat16"
"$KV" score -m "$MODEL" --dtype bfloat16 --context-ids 1,17,42,99,7,250,31 --continuation-ids 12,88,4,301
