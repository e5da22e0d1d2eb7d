// The kvprime command line: each subcommand registers its options and its action.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace kvprime::cli {

// Options every model-using command shares.
struct ModelArgs {
  std::string model_dir;
  std::string dtype = "float32";
  std::string device = "cpu";
  std::string weights = "native";
  void add_to(CLI::App& app);
};

using Action = std::function<int()>;

// Each returns the action to run when its subcommand was chosen.
Action add_info(CLI::App& app);
Action add_generate(CLI::App& app);
Action add_score(CLI::App& app);
Action add_run(CLI::App& app);
Action add_explain(CLI::App& app);
Action add_report(CLI::App& app);
Action add_tokenize(CLI::App& app);
Action add_cache(CLI::App& app);
Action add_bench(CLI::App& app);

// "1,2, 3" -> {1, 2, 3}; throws naming `what` on anything else.
std::vector<int64_t> parse_id_list(const std::string& text, const std::string& what);

}  // namespace kvprime::cli
