// ExperimentConfig: what the seed's lib.config.ExperimentConfig held (model, dtype, device, seed,
// number of samples) and the prompt templates every cache builder and scorer uses.
//
// Templates use {name} placeholders; format_template fills them and refuses unknown or missing
// names, so a typo in a template is an error, not a silently different prompt.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace kvprime {

struct ExperimentConfig {
  std::string model_name = "models/demo";  // checkpoint directory
  std::string dtype = "float32";           // float32 | bfloat16 | float16
  std::string device = "cpu";              // cpu | cuda | cuda:N
  uint64_t seed = 42;
  int64_t num_samples = 0;                 // 0: all samples

  // The document as it is placed in a cache: "Document:\n{document}".
  std::string document_template = "Document:\n{document}";
  // The query prompt scored after a cache: "\n\nQuery: {query}\nAnswer:".
  std::string query_template = "\n\nQuery: {query}\nAnswer:";
  // The surrogate prefix of build_truncated_kv_cache(_corrected).
  std::string surrogate_template = "This document may be relevant to queries like: {surrogate}\n\n";
  // Between a free prefix and the document (build_truncated_cache_variable_prefix, matched caches).
  std::string prefix_separator = " ";
  // What build_suffix_kv_cache appends after the passage.
  std::string suffix_template = "\n\n{suffix}";
  // The answer as scored: "{answer}" (the seed scored the bare answer after "Answer:").
  std::string answer_template = "{answer}";
};

// Replaces each {name} by values.at(name). "{{" and "}}" are literal braces. Throws a
// kvprime::Error naming `what` (e.g. "query_template") for an unknown or unclosed placeholder.
std::string format_template(const std::string& tpl, const std::map<std::string, std::string>& values,
                            const std::string& what = "template");

}  // namespace kvprime
