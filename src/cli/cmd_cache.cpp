// tokenize, cache build|inspect|diff: text in, token ids and cache files out.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "commands.h"
#include "kvprime/cache/cache_file.h"
#include "kvprime/cache/compare.h"
#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"
#include "kvprime/model/model.h"
#include "kvprime/prime/build.h"
#include "kvprime/prime/experiment_config.h"
#include "kvprime/tokenizer/tokenizer.h"

namespace kvprime::cli {

namespace {

std::string json_str(const std::string& s) { return nlohmann::json(s).dump(); }

}  // namespace

Action add_tokenize(CLI::App& app) {
  struct Args {
    std::string tokenizer, text;
    bool no_special = false, json = false;
  };
  auto a = std::make_shared<Args>();
  app.add_option("-t,--tokenizer", a->tokenizer, "checkpoint directory or tokenizer.json")->required();
  app.add_option("text", a->text, "text to tokenize")->required();
  app.add_flag("--no-special", a->no_special, "do not add special tokens (BOS)");
  app.add_flag("--json", a->json, "print ids, tokens and byte offsets as JSON");
  return [a]() {
    Tokenizer tok = Tokenizer::from_checkpoint(a->tokenizer);
    Encoding e = tok.encode_with_offsets(a->text, !a->no_special);
    if (a->json) {
      nlohmann::json j{{"ids", e.ids}, {"tokens", e.tokens}, {"offsets", e.offsets}};
      std::cout << j.dump() << "\n";
      return 0;
    }
    for (size_t i = 0; i < e.ids.size(); ++i)
      std::cout << std::setw(4) << i << "  " << std::setw(7) << e.ids[i] << "  " << std::setw(18)
                << std::left << json_str(e.tokens[i]) << std::right << "  [" << e.offsets[i].first
                << ", " << e.offsets[i].second << ")\n";
    return 0;
  };
}

Action add_cache(CLI::App& app) {
  app.require_subcommand(1);
  struct Build {
    ModelArgs model;
    std::string passage, prefix, out;
    bool no_correct = false;
  };
  auto b = std::make_shared<Build>();
  CLI::App* build = app.add_subcommand("build", "Build a document cache (bare, or primed by a prefix and truncated) into a file");
  b->model.add_to(*build);
  build->add_option("--passage", b->passage, "the document (placed in the document template)")->required();
  build->add_option("--prefix", b->prefix, "priming prefix (cut away after the build)");
  build->add_flag("--no-correct", b->no_correct, "leave the document keys at their primed positions");
  build->add_option("-o,--out", b->out, "output .safetensors file")->required();

  auto inspect_path = std::make_shared<std::string>();
  auto inspect_tok = std::make_shared<std::string>();
  CLI::App* inspect = app.add_subcommand("inspect", "Print a cache file's model, shapes, positions and tokens");
  inspect->add_option("file", *inspect_path, "cache file")->required()->check(CLI::ExistingFile);
  inspect->add_option("-t,--tokenizer", *inspect_tok, "decode the token ids with this tokenizer");

  auto diff_a = std::make_shared<std::string>(), diff_b = std::make_shared<std::string>();
  CLI::App* diff = app.add_subcommand("diff", "Per-layer relative difference of two caches of the same model");
  diff->add_option("a", *diff_a, "reference cache file")->required()->check(CLI::ExistingFile);
  diff->add_option("b", *diff_b, "other cache file")->required()->check(CLI::ExistingFile);

  return [=]() {
    if (build->parsed()) {
      LoadOptions lo;
      lo.dtype = parse_dtype(b->model.dtype, "--dtype");
      lo.device = parse_device(b->model.device, "--device");
      lo.weights = parse_weight_format(b->model.weights, "--weights");
      Model m = Model::load(b->model.model_dir, lo);
      Tokenizer tok = Tokenizer::from_checkpoint(b->model.model_dir);
      ExperimentConfig cfg;
      Primer primer(m, tok, cfg);
      KVP_CHECK(!b->passage.empty(), "--passage: the document is empty");
      KVCache cache;
      std::map<std::string, std::string> meta{{"passage", b->passage}};
      if (b->prefix.empty()) {
        cache = primer.build_kv_cache(format_template(cfg.document_template, {{"document", b->passage}})).cache;
      } else {
        // One construction with and without --no-correct: prefix + separator, then the document
        // (as build_truncated_cache_variable_prefix); only the RoPE correction differs.
        JointTokens j = primer.tokenize_joint(b->prefix + cfg.prefix_separator,
                                              format_template(cfg.document_template, {{"document", b->passage}}));
        PrimeOptions opt;
        opt.correct_rope = !b->no_correct;
        cache = build_primed_cache(m, j.prefix_ids(), j.doc_ids(), opt);
        meta["prefix"] = b->prefix;
        meta["prefix_token_len"] = std::to_string(j.boundary);
        meta["rope_corrected"] = b->no_correct ? "false" : "true";
      }
      // A cache with NaN/inf would score garbage wherever it is used: refuse to write it.
      KVP_CHECK(!cache.nonfinite_rows().any().item<bool>(), "cache build: the cache of --passage holds "
                "NaN or infinity in its keys/values (", dtype_name(cache.dtype()), " overflow? damaged "
                "weights in ", b->model.model_dir, "?); nothing was written to ", b->out,
                ". Try --dtype float32, or check the checkpoint");
      save_cache(b->out, cache, meta);
      std::cout << "kvprime cache build: " << cache.length() << " slots, " << cache.n_layer()
                << " layers -> " << b->out << "\n";
      return 0;
    }
    if (inspect->parsed()) {
      LoadedCache l = load_cache(*inspect_path);
      const KVCache& c = l.cache;
      std::cout << "model        " << c.model().name << " (fingerprint " << c.model().fingerprint << ")\n"
                << "layers       " << c.n_layer() << "  kv heads " << c.model().n_head_kv << "  head_dim "
                << c.model().head_dim << "\n"
                << "dtype        " << dtype_name(c.dtype()) << "\n"
                << "batch x len  " << c.batch() << " x " << c.length() << "\n"
                << "checksum     verified\n";
      const at::Tensor bad = c.nonfinite_rows().cpu();
      std::string bad_rows;
      for (int64_t r = 0; r < c.batch(); ++r)
        if (bad[r].item<bool>()) bad_rows += (bad_rows.empty() ? "" : ", ") + std::to_string(r);
      std::cout << "values       " << (bad_rows.empty() ? "all finite" : "NaN/inf in the valid slots of row(s) " + bad_rows)
                << "\n";
      for (const auto& [k, v] : l.user_metadata) std::cout << "meta         " << k << " = " << json_str(v) << "\n";
      std::optional<Tokenizer> tok;
      if (!inspect_tok->empty()) tok = Tokenizer::from_checkpoint(*inspect_tok);
      for (int64_t b2 = 0; b2 < c.batch(); ++b2) {
        auto pos = c.positions()[b2], ids = c.token_ids()[b2], valid = c.valid()[b2];
        std::cout << "row " << b2 << ": slot position token" << (tok ? " text" : "") << "\n";
        for (int64_t s = 0; s < c.length(); ++s) {
          if (!valid[s].item<bool>()) continue;
          const int64_t id = ids[s].item<int64_t>();
          std::cout << "  " << std::setw(5) << s << " " << std::setw(8) << pos[s].item<int64_t>() << " "
                    << std::setw(7) << id;
          if (tok && id >= 0) std::cout << " " << json_str(tok->id_to_token(static_cast<int32_t>(id)).value_or("?"));
          std::cout << "\n";
        }
      }
      return 0;
    }
    LoadedCache la = load_cache(*diff_a), lb = load_cache(*diff_b);
    la.cache.check_compatible(lb.cache, "cache diff '" + *diff_a + "' vs '" + *diff_b + "'");
    const bool same_ids = at::equal(la.cache.token_ids(), lb.cache.token_ids());
    const bool same_pos = at::equal(la.cache.positions(), lb.cache.positions());
    std::cout << "token ids " << (same_ids ? "equal" : "DIFFER") << ", positions "
              << (same_pos ? "equal" : "DIFFER") << "\nlayer  |K_b-K_a|/|K_a|  |V_b-V_a|/|V_a|\n";
    const LayerDistance d = relative_l2_per_layer(la.cache, lb.cache);
    for (int64_t il = 0; il < la.cache.n_layer(); ++il)
      std::cout << std::setw(5) << il << "  " << std::setw(15) << std::scientific << std::setprecision(3)
                << d.key[il] << "  " << std::setw(15) << d.value[il] << std::defaultfloat << "\n";
    return 0;
  };
}

}  // namespace kvprime::cli
