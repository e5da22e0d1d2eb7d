// Tiny random-weight checkpoints for tests that need a model but not HF's numbers
// (properties: cache continuation == one pass, batching == one at a time, error paths).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace kvprime::test {

// A small config.json of the given model_type: llama, mistral, qwen2, qwen3, gemma2, gemma3_text.
nlohmann::json tiny_config(const std::string& model_type);

// Writes dir/config.json and dir/model.safetensors (float32, seeded normal weights; norm weights
// random around their neutral value so the norms are exercised).
void write_random_model(const std::string& dir, const nlohmann::json& config, uint64_t seed = 0);

}  // namespace kvprime::test
