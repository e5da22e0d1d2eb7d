// kvprime: build, operate on and score transformer KV caches.
#include <iostream>
#include <map>

#include <c10/util/Exception.h>

#include "commands.h"
#include "kvprime/core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"kvprime: build, operate on and score transformer KV caches"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("kvprime 0.1.0"));

  std::map<CLI::App*, kvprime::cli::Action> actions;
  auto reg = [&](const char* name, const char* help, auto add) {
    CLI::App* sub = app.add_subcommand(name, help);
    actions[sub] = add(*sub);
  };
  reg("info", "Print a checkpoint's resolved configuration", kvprime::cli::add_info);
  reg("generate", "Greedy generation from token ids", kvprime::cli::add_generate);
  reg("score", "Mean NLL of continuation tokens after a context, through the KV cache",
      kvprime::cli::add_score);
  reg("run", "Run a priming experiment (TOML); resumes where a previous run stopped",
      kvprime::cli::add_run);
  reg("explain", "Show each condition's cache layout and what the query attends to, for one sample",
      kvprime::cli::add_explain);
  reg("report", "Re-render report.md/.html and CSVs of an experiment from its results store",
      kvprime::cli::add_report);
  reg("tokenize", "Token ids, vocabulary strings and byte offsets of a text", kvprime::cli::add_tokenize);
  reg("cache", "Build, inspect and compare cache files", kvprime::cli::add_cache);
  reg("bench", "The seed pipeline's checks and timings (batch-1 seed loop, batched experiment) on a checkpoint",
      kvprime::cli::add_bench);

  // CLI11 answers an unknown command with "A subcommand is required": name it and list the commands.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const auto& [sub, action] : actions) {
      known = known || sub->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    if (!known) {
      std::cerr << "kvprime: error: unknown command '" << argv[1] << "'; the commands are " << names
                << " (kvprime --help)\n";
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);  // prints usage; exit code 106 etc. for errors, 0 for --help
  }
  try {
    for (auto& [sub, action] : actions)
      if (sub->parsed()) return action();
  } catch (const kvprime::Error& e) {
    std::cerr << "kvprime: error: " << e.what() << "\n";
    return 1;
  } catch (const c10::Error& e) {
    // A LibTorch check that kvprime's own checks did not anticipate: its message, not its C++ stack.
    std::cerr << "kvprime: unexpected error (LibTorch): " << e.what_without_backtrace() << "\n";
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "kvprime: unexpected error: " << e.what() << "\n";
    return 3;
  }
  return 0;
}
