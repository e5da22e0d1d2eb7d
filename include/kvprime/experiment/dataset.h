// The QA dataset of an experiment: JSON Lines, one sample per line (data/demo/README.md).
//
//   {"id": "science-001", "passage": "...", "query": "...", "answer": "...",
//    "surrogates": ["...", "..."], "irrelevant": ["economics-004"], "topic": "science", ...}
//
// Fields: `passage`, `query`, `answer` (non-empty strings) are required. `id` (string or integer;
// default "line-<n>", n the 1-based line number) must be unique. `surrogates` (array of non-empty
// strings) is optional. Irrelevant passages for ranking are optional and come in two forms:
// `irrelevant` holds the *ids* of other samples of the same file (the demo format), resolved to
// their passages; `irrelevant_passages` holds passage texts. Every other field is kept in `extra`.
// A JSON null counts as absent for the optional fields.
//
// The whole file is read and checked, whatever the limit: every problem is a kvprime::Error naming
// "path:line", the sample id when known, the field, what was expected and what was found, and the
// fix — invalid UTF-8 (with the byte column), invalid JSON (with the parser's column), a line that
// is not an object, a key given twice, a missing/empty/mistyped field, a duplicate id, an
// irrelevant id that is unknown or the sample itself, a file with no samples. Blank lines are
// skipped; CRLF line ends and a UTF-8 byte order mark are accepted. Texts are kept byte for byte
// (no trimming, no normalization).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace kvprime {

struct Sample {
  std::string id;                       // "id" field, or "line-<line>"
  int64_t index = 0;                    // 0-based position among the samples returned
  int64_t line = 0;                     // 1-based line in the file (for messages)
  std::string passage, query, answer;
  std::vector<std::string> surrogates;  // may be empty
  std::vector<std::string> irrelevant;  // passages: those of `irrelevant_ids`, then `irrelevant_passages`
  std::vector<std::string> irrelevant_ids;  // the `irrelevant` field as given (ids of other samples)
  nlohmann::json extra = nlohmann::json::object();  // every other field, e.g. topic, split
};

struct DatasetOptions {
  int64_t limit = 0;  // keep the first `limit` samples (file order); 0: all. The file is still
                      // read and checked whole (irrelevant ids may point past the limit).
  // Fields that every sample must have, with the reason (named in the error), e.g.
  // {"surrogates", "condition 'surrogate' (prefix = \"surrogate\")"}. "surrogates" and
  // "irrelevant" must be non-empty ("irrelevant" is satisfied by either irrelevant form); any
  // other name must be present in `extra` and not null.
  std::map<std::string, std::string> required;
};

std::vector<Sample> read_dataset(const std::string& path, const DatasetOptions& options = {});

// The same from text; `origin` names the source in errors (tests, stdin).
std::vector<Sample> parse_dataset(const std::string& text, const std::string& origin,
                                  const DatasetOptions& options = {});

}  // namespace kvprime
