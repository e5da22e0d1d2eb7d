// A priming experiment, declared in TOML (`kvprime run experiment.toml`).
//
//   [experiment]                         # what to run on
//   name = "demo"        model = "models/demo"     dtype = "float32"   device = "cpu"
//   dataset = "data/demo/qa.jsonl"       samples = 40 (0: all)         seed = 42
//   batch = 16           out = "out/demo"          # results.sqlite, report.* go there
//   [templates]                          # optional: ExperimentConfig's templates
//   document = "Document:\n{document}"   query = "\n\nQuery: {query}\nAnswer:"  ...
//   [[condition]]                        # one per condition; "bare" is the baseline
//   name = "oracle"      prefix = "oracle"  ...
//
// A condition is data, not code: how its prefix is made (PrefixSpec), how the cache is built
// (mask, truncated or full context, RoPE correction, round-trip noise, document padding), how it is
// mixed with the bare cache (key/value sources per layer, value interpolation) and how it is scored
// (query-time mask, NLL or PMI). Every field is checked when the file is read; an error names the
// file, line and column, the field, and the accepted values.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvprime/prime/experiment_config.h"

namespace kvprime {

enum class PrefixKind {
  None,           // no prefix: the bare cache (BOS + document)
  Oracle,         // the sample's query
  Shuffled,       // the query's words in a seeded random order
  Reversed,       // the query's words reversed
  Surrogate,      // sample.surrogates[surrogate_index]
  Generated,      // greedy decoding from generate_template ({document}) by the model itself
  Keywords,       // the passage's top_k TF-IDF keywords (IDF over the dataset's passages)
  FirstSentence,  // the passage's first sentence
  Static,         // a fixed text (`text`), e.g. "What are the key facts I need to know?"
  RandomWords,    // seeded random words from an unrelated passage (length-matched to the query)
};

struct PrefixSpec {
  PrefixKind kind = PrefixKind::None;
  int64_t surrogate_index = 0;                  // Surrogate
  std::string text;                             // Static
  std::string generate_template =               // Generated
      "Document:\n{document}\n\nA question this document answers:";
  int64_t max_new_tokens = 16;                  // Generated
  int64_t top_k = 5;                            // Keywords
  int64_t n_words = 8;                          // RandomWords when not length-matched
  bool length_matched = true;                   // RandomWords: as many words as the query
  std::string template_ = "{prefix}";           // the prefix text is placed in this ({prefix})
  int64_t repetitions = 1;                      // the prefix repeated (one mask segment each)
};

enum class BuildMask { Causal, Block };         // Block: repetitions cannot see each other
enum class ContextMode { Truncated, Full };     // Full: the prefix stays in the cache
enum class ScoreTarget { Nll, Pmi };
enum class CacheSource { Self, Bare };          // for per-layer key/value selection

struct ConditionSpec {
  std::string name;
  PrefixSpec prefix;
  BuildMask mask = BuildMask::Causal;
  ContextMode context = ContextMode::Truncated;
  bool correct_rope = true;                     // Truncated: move document keys back to 1..n
  std::optional<int64_t> roundtrip_noise;       // rotate keys +offset and back (noise control)
  // Mixing with the bare cache of the same document ids (Truncated, corrected only). In the
  // `layers` (empty: every layer) keys come from `keys` and values from `values` (Self: this
  // condition's primed cache, Bare: the bare one); other layers keep the primed cache's own.
  // keys = "bare" alone is the values-only hybrid (bare keys, primed values).
  CacheSource keys = CacheSource::Self, values = CacheSource::Self;
  std::vector<int64_t> layers;
  std::optional<double> value_alpha;            // values (1-a)*bare + a*primed (in `layers`)
  bool hide_prefix = false;                     // Full: the query cannot attend to prefix slots
  ScoreTarget target = ScoreTarget::Nll;
  std::optional<int64_t> pad_to_tokens;         // pad the document with unrelated passages' text

  bool is_bare() const { return prefix.kind == PrefixKind::None && !roundtrip_noise && !pad_to_tokens; }
};

struct ExperimentSpec {
  std::string source;                           // the TOML file it was read from
  std::string name = "experiment";
  std::string model;
  std::string dtype = "float32", device = "cpu";
  std::string weights = "native";               // native | nf4 | nf4-dq (LoadOptions::weights)
  std::string dataset;
  int64_t samples = 0;                          // 0: all
  uint64_t seed = 42;
  int64_t batch = 16;
  std::string out;                              // results.sqlite, report.md, report.html, *.csv
  bool ranking = false;                         // also score every condition on the sample's
                                                // irrelevant passages (AUC, MRR, Hit@k)
  int64_t divergence_samples = 8;               // samples (the first ones) whose caches are
                                                // compared to the bare cache per layer (report)
  ExperimentConfig templates;
  std::vector<ConditionSpec> conditions;        // conditions[0] is "bare" (added when missing)

  // Canonical JSON of everything that changes results (not `out`, not `batch`): stored with the
  // results; a resumed run must have the same.
  nlohmann::json results_identity() const;
  std::string store_path() const { return out + "/results.sqlite"; }
};

// Reads and validates a TOML experiment. Relative paths (model, dataset, out) are relative to the
// TOML file's directory. Errors: kvprime::Error "file:line:col: field: problem; accepted: ...".
ExperimentSpec load_experiment(const std::string& toml_path);
// The same from text (tests); `origin` names it in errors, `base_dir` resolves relative paths.
ExperimentSpec parse_experiment(const std::string& toml_text, const std::string& origin,
                                const std::string& base_dir);

const char* prefix_kind_name(PrefixKind k);

}  // namespace kvprime
