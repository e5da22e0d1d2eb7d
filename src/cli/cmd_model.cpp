// info, generate, score: the commands that run a model on token ids.
#include <cmath>
#include <iomanip>
#include <iostream>

#include "commands.h"
#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"
#include "kvprime/model/generate.h"
#include "kvprime/model/model.h"

namespace kvprime::cli {

namespace {

Model load(const ModelArgs& a) {
  LoadOptions lo;
  lo.dtype = parse_dtype(a.dtype, "--dtype");
  lo.device = parse_device(a.device, "--device");
  lo.weights = parse_weight_format(a.weights, "--weights");
  return Model::load(a.model_dir, lo);
}

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

}  // namespace

Action add_info(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  app.add_option("path", *path, "checkpoint directory or config.json")->required();
  return [path]() {
    ModelConfig c = load_model_config(*path);
    std::cout << "source        " << c.source << "\n"
              << "architecture  " << c.architecture << " (" << arch_name(c.arch) << ")\n"
              << "layers        " << c.n_layer << "\n"
              << "d_model       " << c.hidden_size << "   d_ff " << c.intermediate_size << "\n"
              << "heads         " << c.n_head << " query, " << c.n_head_kv << " kv, head_dim "
              << c.head_dim << "\n"
              << "vocab         " << c.vocab_size << (c.tie_word_embeddings ? " (tied)" : "") << "\n"
              << "attn scale    " << c.attn_scale << "\n";
    for (int64_t il = 0; il < c.n_layer; ++il) {
      const auto& L = c.layers[il];
      std::cout << "layer " << std::setw(3) << il << "     "
                << (L.kind == AttentionKind::Full ? "full   " : "sliding") << " window "
                << L.sliding_window << "  rope " << rope_type_name(L.rope.type) << " theta "
                << L.rope.theta << " factor " << L.rope.factor << " rotary_dim " << c.rotary_dim(il)
                << "\n";
    }
    return 0;
  };
}

Action add_generate(CLI::App& app) {
  struct Args {
    ModelArgs model;
    std::string ids;
    int64_t max_new = 16;
  };
  auto a = std::make_shared<Args>();
  a->model.add_to(app);
  app.add_option("--ids", a->ids, "prompt token ids, comma-separated")->required();
  app.add_option("-n,--max-new-tokens", a->max_new, "tokens to generate")->capture_default_str();
  return [a]() {
    Model m = load(a->model);
    auto prompt = parse_id_list(a->ids, "--ids");
    KVCache cache = m.new_cache(1);
    auto r = generate_greedy(m, prompt, cache, {a->max_new, {}, true});
    std::cout << join(r.tokens) << "\n";
    return 0;
  };
}

Action add_score(CLI::App& app) {
  struct Args {
    ModelArgs model;
    std::string context, continuation;
  };
  auto a = std::make_shared<Args>();
  a->model.add_to(app);
  app.add_option("--context-ids", a->context, "context token ids (cached first)")->required();
  app.add_option("--continuation-ids", a->continuation, "token ids to score after the context")
      ->required();
  return [a]() {
    Model m = load(a->model);
    auto ctx = parse_id_list(a->context, "--context-ids");
    auto cont = parse_id_list(a->continuation, "--continuation-ids");
    KVP_CHECK(!ctx.empty(), "--context-ids: give at least one token (e.g. BOS)");
    KVP_CHECK(!cont.empty(), "--continuation-ids: give at least one token to score");
    // Prefill the context, then run the continuation through the cache. The logit that predicts
    // continuation token i comes from the previous token: the context's last logit for i = 0.
    KVCache cache = m.new_cache(1);
    auto ctx_ids = at::tensor(ctx, at::kLong).unsqueeze(0);
    ForwardOptions last;
    last.logits = LogitsMode::Last;
    auto first = m.forward(ctx_ids, m.continue_positions(cache, ctx_ids.size(1)), cache, last);
    auto cont_ids = at::tensor(cont, at::kLong).unsqueeze(0);
    at::Tensor logits = first.unsqueeze(1);  // [1, 1, V]
    if (cont.size() > 1) {
      auto in = cont_ids.slice(1, 0, cont_ids.size(1) - 1);
      auto rest = m.forward(in, m.continue_positions(cache, in.size(1)), cache);
      logits = at::cat({logits, rest}, 1);  // [1, n, V]
    }
    auto logp = at::log_softmax(logits.to(at::kDouble), -1).squeeze(0).cpu();
    auto tgt = cont_ids.squeeze(0);
    auto nll = -logp.gather(1, tgt.unsqueeze(1)).squeeze(1);  // [n]
    std::cout << std::setprecision(8) << "tokens " << cont.size() << "  mean_nll "
              << nll.mean().item<double>() << "  total_nll " << nll.sum().item<double>() << "\n";
    return 0;
  };
}

}  // namespace kvprime::cli
