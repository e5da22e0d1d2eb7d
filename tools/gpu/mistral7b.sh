# Sourced by the GPU scripts that need the random 7.24B Mistral-7B-Instruct-v0.2-shaped checkpoint
# (bf16, seed 0; carry third_party/npm/llama2): start_mistral7b writes it to $MODEL (default
# /tmp/mistral7b) in the background unless it is there already, log in $OUT/model.log;
# wait_mistral7b waits for it and prints the writer's last line.
MODEL=${MODEL:-/tmp/mistral7b}
start_mistral7b() {
  MISTRAL7B_PID=
  [ -f "$MODEL/.complete" ] && return 0
  ( python3 tools/make_random_hf_model.py --config tests/fixtures/configs/mistral-7b-instruct-v0.2.config.json \
      --tokenizer third_party/npm/llama2 --dtype bfloat16 --seed 0 --out "$MODEL" && touch "$MODEL/.complete" ) \
    > "$OUT/model.log" 2>&1 &
  MISTRAL7B_PID=$!
}
wait_mistral7b() {
  [ -n "${MISTRAL7B_PID:-}" ] && wait "$MISTRAL7B_PID"
  tail -1 "$OUT/model.log" 2>/dev/null || true
}
