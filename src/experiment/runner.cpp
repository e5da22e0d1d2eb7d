#include "kvprime/experiment/runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "kvprime/analysis/report.h"
#include "kvprime/cache/batch.h"
#include "kvprime/cache/compare.h"
#include "kvprime/cache/surgery.h"
#include "kvprime/core/dtype.h"
#include "kvprime/core/error.h"
#include "kvprime/experiment/prefix.h"
#include "kvprime/experiment/sink.h"
#include "kvprime/experiment/store.h"
#include "kvprime/prime/score.h"

namespace kvprime {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// KVPRIME_PROFILE=1: where a run's time goes. Each mark waits for the device, so the phases are
// real but the run is slower than without (no overlap of host and device work); off by default.
class PhaseClock {
 public:
  explicit PhaseClock(at::Device device) : device_(device), on_(std::getenv("KVPRIME_PROFILE") != nullptr) {
    last_ = now_s();
  }
  void mark(const char* phase) {
    if (!on_) return;
    if (device_.is_cuda()) at::zeros({1}, at::TensorOptions().device(device_)).cpu();  // waits
    const double t = now_s();
    total_[phase] += t - last_;
    last_ = t;
  }
  void print() const {
    if (!on_) return;
    double all = 0;
    for (const auto& [k, v] : total_) all += v;
    std::fprintf(stderr, "kvprime profile (%.3f s):", all);
    for (const auto& [k, v] : total_) std::fprintf(stderr, "  %s %.3f s (%.0f%%)", k.c_str(), v, 100 * v / all);
    std::fprintf(stderr, "\n");
  }

 private:
  at::Device device_;
  bool on_;
  double last_;
  std::map<std::string, double> total_;
};

TokenIds concat(TokenIds a, const TokenIds& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::string with_separator(const std::string& segment, const std::string& sep) {
  if (!segment.empty() && std::isspace(static_cast<unsigned char>(segment.back()))) return segment;
  return segment + sep;
}

std::string fmt_duration(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", static_cast<long>(t / 3600), static_cast<long>(t % 3600 / 60));
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", static_cast<long>(t / 60), static_cast<long>(t % 60));
  return buf;
}

// A one-line progress bar on stderr: rows stored / total, rate, ETA and tokens/s. On a terminal it
// redraws in place; otherwise (logs, CI) it prints a line every 10%.
class Progress {
 public:
  Progress(bool enabled, int64_t total, int64_t done)
      : enabled_(enabled), tty_(isatty(2)), total_(total), done0_(done), done_(done), t0_(now_s()) {}
  void update(int64_t rows, int64_t tokens) {
    done_ += rows;
    tokens_ += tokens;
    if (!enabled_ || total_ == 0) return;
    const int64_t pct = 100 * done_ / total_;
    if (!tty_ && pct / 10 == last_decile_ && done_ < total_) return;
    last_decile_ = pct / 10;
    const double el = now_s() - t0_;
    const double rate = (done_ - done0_) / std::max(el, 1e-9);
    const double eta = rate > 0 ? (total_ - done_) / rate : NAN;
    const int width = 30;
    const int fill = static_cast<int>(width * done_ / total_);
    std::fprintf(stderr, "%s[%s%s] %ld/%ld rows %3ld%%  %.1f rows/s  %.0f tok/s  ETA %s%s",
                 tty_ ? "\r" : "", std::string(fill, '#').c_str(), std::string(width - fill, '.').c_str(),
                 static_cast<long>(done_), static_cast<long>(total_), static_cast<long>(pct), rate,
                 tokens_ / std::max(el, 1e-9), fmt_duration(eta).c_str(), tty_ ? "" : "\n");
    std::fflush(stderr);
  }
  void finish() {
    if (enabled_ && tty_) std::fprintf(stderr, "\n");
  }

 private:
  bool enabled_, tty_;
  int64_t total_, done0_, done_, tokens_ = 0, last_decile_ = -1;
  double t0_;
};

// Per layer, ||K_c - K_bare|| / ||K_bare|| and the same for V, over the document slots (BOS and the
// last doc_len slots of `c`; a full-context cache keeps prefix slots in between, which are dropped).
nlohmann::json layer_divergence(const KVCache& c, const KVCache& bare) {
  const LayerDistance d = relative_l2_per_layer(
      bare, extract_and_truncate_cache_with_bos(c, bare.length() - 1), "per-layer divergence");
  return {{"key_divergence", d.key}, {"value_divergence", d.value}};
}

}  // namespace

// Per-sample data shared by all conditions (tokenized once).
struct ExperimentRunner::Impl {
  const ExperimentSpec& spec;
  const Model& model;
  const Tokenizer& tok;
  const std::vector<Sample>& samples;
  Primer primer;
  PrefixMaker maker;
  std::vector<TokenIds> query_ids, answer_ids;
  mutable std::map<std::pair<std::string, size_t>, std::string> generated;  // (condition, sample)

  Impl(const ExperimentSpec& s, const Model& m, const Tokenizer& t, const std::vector<Sample>& smp)
      : spec(s), model(m), tok(t), samples(smp), primer(m, t, s.templates), maker(passages(smp), s.seed) {
    for (const auto& x : samples) {
      query_ids.push_back(primer.tokenize(format_template(spec.templates.query_template, {{"query", x.query}}, "query_template")));
      answer_ids.push_back(primer.tokenize(format_template(spec.templates.answer_template, {{"answer", x.answer}}, "answer_template")));
    }
  }

  static std::vector<std::string> passages(const std::vector<Sample>& s) {
    std::vector<std::string> out;
    for (const auto& x : s) out.push_back(x.passage);
    return out;
  }

  std::string prefix_text(const ConditionSpec& c, size_t i) const {
    if (c.prefix.kind == PrefixKind::Generated) {
      auto key = std::make_pair(c.name, i);
      auto it = generated.find(key);
      if (it != generated.end()) return it->second;
      const Sample& s = samples[i];
      std::string t = maker.make(c.prefix, {s.id, s.passage, s.query, s.surrogates}, i, &model, &tok);
      generated[key] = t;
      return t;
    }
    const Sample& s = samples[i];
    return maker.make(c.prefix, {s.id, s.passage, s.query, s.surrogates}, i);
  }

  // The document text of sample i under condition c (padded for length experiments).
  // The document text of sample i under condition c (padded for length experiments); `passage`
  // replaces the sample's own passage for ranking candidates.
  std::string document(const ConditionSpec& c, size_t i, const std::string* passage_override = nullptr) const {
    std::string passage = passage_override ? *passage_override : samples[i].passage;
    if (c.pad_to_tokens) {
      // Bytes are a safe over-estimate of tokens; the token ids are cut to the target below.
      passage += " " + maker.unrelated_text(i, samples[i].id, static_cast<size_t>(*c.pad_to_tokens) * 8);
    }
    return format_template(spec.templates.document_template, {{"document", passage}}, "document_template");
  }

  ConditionLayout layout(const ConditionSpec& c, size_t i, const std::string* passage_override = nullptr) const {
    ConditionLayout L;
    const std::string doc = document(c, i, passage_override);
    const std::string sep = spec.templates.prefix_separator;
    if (c.prefix.kind == PrefixKind::None) {
      TokenIds ids = primer.tokenize_with_bos(doc);
      L.prefix_ids = TokenIds{ids[0]};
      L.doc_ids.assign(ids.begin() + 1, ids.end());
    } else {
      L.prefix_text = prefix_text(c, i);
      std::vector<std::string> segs = prefix_segments(c.prefix, L.prefix_text);
      if (c.mask == BuildMask::Causal) {
        // prefix_separator between segments and before the document, unless the segment already
        // ends in whitespace (a template like the seed's surrogate one ends in "\n\n").
        std::string joined;
        for (const auto& s : segs) joined += with_separator(s, sep);
        JointTokens j = primer.tokenize_joint(joined, doc);
        L.prefix_ids = j.prefix_ids();
        L.doc_ids = j.doc_ids();
        L.segment_lengths = {static_cast<int64_t>(L.prefix_ids.size()) - 1};
        L.segments = {TokenIds(L.prefix_ids.begin() + 1, L.prefix_ids.end())};
      } else {
        // Block mask: each segment tokenized on its own (segments cannot see each other, so a
        // merge across their boundary would be meaningless); the document as in the bare cache.
        TokenIds ids = primer.tokenize_with_bos(doc);
        L.prefix_ids = TokenIds{ids[0]};
        L.doc_ids.assign(ids.begin() + 1, ids.end());
        for (const auto& s : segs) {
          TokenIds seg = primer.tokenize(with_separator(s, sep));
          KVP_CHECK(!seg.empty(), "condition '", c.name, "': an empty prefix segment for sample '",
                    samples[i].id, "'");
          L.segments.push_back(seg);
          L.segment_lengths.push_back(static_cast<int64_t>(seg.size()));
          L.prefix_ids = concat(L.prefix_ids, seg);
        }
      }
    }
    if (c.pad_to_tokens && static_cast<int64_t>(L.doc_ids.size()) > *c.pad_to_tokens) {
      const std::string& own_passage = passage_override ? *passage_override : samples[i].passage;
      const int64_t own = static_cast<int64_t>(primer.tokenize_with_bos(format_template(
                              spec.templates.document_template, {{"document", own_passage}}, "document_template")).size()) - 1;
      L.doc_ids.resize(static_cast<size_t>(std::max(own, *c.pad_to_tokens)));
    }
    KVP_CHECK(!L.doc_ids.empty(), "sample '", samples[i].id, "': the document has no tokens");
    const int64_t n_prefix = static_cast<int64_t>(L.prefix_ids.size()) - 1;
    const int64_t n_doc = static_cast<int64_t>(L.doc_ids.size());
    L.cache_len = 1 + n_doc + (c.context == ContextMode::Full ? n_prefix : 0);
    L.hidden = c.hide_prefix ? n_prefix : 0;
    return L;
  }
};

ExperimentRunner::ExperimentRunner(const ExperimentSpec& spec, const Model& model,
                                   const Tokenizer& tokenizer, std::vector<Sample> samples)
    : spec_(spec), model_(model), tok_(tokenizer), samples_(std::move(samples)) {}

ConditionLayout ExperimentRunner::layout(const ConditionSpec& condition, size_t index) const {
  KVP_CHECK(index < samples_.size(), "sample index ", index, " out of range (", samples_.size(), " samples)");
  Impl impl(spec_, model_, tok_, samples_);
  return impl.layout(condition, index);
}

std::string ExperimentRunner::explain(size_t index) const {
  KVP_CHECK(index < samples_.size(), "sample index ", index, " out of range (", samples_.size(), " samples)");
  Impl impl(spec_, model_, tok_, samples_);
  std::ostringstream os;
  const Sample& s = samples_[index];
  os << "sample '" << s.id << "' (line " << s.line << "): query \"" << s.query << "\", answer \""
     << s.answer << "\"\n  query+answer: " << impl.query_ids[index].size() << " + "
     << impl.answer_ids[index].size() << " tokens (NLL over the last " << impl.answer_ids[index].size() - 1
     << ")\n\n";
  for (const auto& c : spec_.conditions) {
    ConditionLayout L = impl.layout(c, index);
    const int64_t n_prefix = static_cast<int64_t>(L.prefix_ids.size()) - 1;
    const int64_t n_doc = static_cast<int64_t>(L.doc_ids.size());
    std::string seg_build, seg_seen;
    for (size_t k = 0; k < L.segment_lengths.size(); ++k) {
      seg_build += "[" + std::to_string(L.segment_lengths[k]) + "xP" + (L.segment_lengths.size() > 1 ? std::to_string(k + 1) : "") + "]";
    }
    std::string build = "[BOS]" + seg_build + "[" + std::to_string(n_doc) + "xD]";
    std::string seen;
    if (c.prefix.kind == PrefixKind::None) {
      seen = "[BOS][" + std::to_string(n_doc) + "xD]";
    } else if (c.context == ContextMode::Full) {
      seen = "[BOS]" + (c.hide_prefix ? "[" + std::to_string(n_prefix) + "x·]" : seg_build) + "[" + std::to_string(n_doc) + "xD]";
    } else {
      seen = "[BOS][" + std::to_string(n_doc) + "xD]";
    }
    os << "  " << c.name << ": build " << build;
    if (c.mask == BuildMask::Block) os << " (block mask: segments see BOS and themselves only)";
    os << " -> query sees " << seen << " at positions ";
    if (c.context == ContextMode::Full || c.prefix.kind == PrefixKind::None || c.correct_rope)
      os << "0.." << L.cache_len - 1;
    else
      os << "0," << 1 + n_prefix << ".." << n_prefix + n_doc << " (uncorrected)";
    os << "\n";
    if (!L.prefix_text.empty()) os << "      prefix: \"" << L.prefix_text << "\"" << (c.prefix.repetitions > 1 ? " x" + std::to_string(c.prefix.repetitions) : "") << "\n";
    std::vector<std::string> notes;
    if (c.roundtrip_noise) notes.push_back("keys rotated +" + std::to_string(*c.roundtrip_noise) + " and back");
    if (c.keys == CacheSource::Bare || c.values == CacheSource::Bare) {
      std::string l = c.layers.empty() ? "all layers" : "layers " + std::to_string(c.layers.size());
      notes.push_back(std::string("keys from ") + (c.keys == CacheSource::Bare ? "bare" : "primed") +
                      ", values from " + (c.values == CacheSource::Bare ? "bare" : "primed") + " (" + l + ")");
    }
    if (c.value_alpha) notes.push_back("values " + std::to_string(1 - *c.value_alpha) + "*bare + " + std::to_string(*c.value_alpha) + "*primed");
    if (c.target == ScoreTarget::Pmi) notes.push_back("PMI: minus NLL given a BOS-only cache");
    if (c.pad_to_tokens) notes.push_back("document padded to " + std::to_string(*c.pad_to_tokens) + " tokens");
    for (const auto& n : notes) os << "      " << n << "\n";
  }
  return os.str();
}

RunSummary ExperimentRunner::run(const RunOptions& options) {
  const double t0 = now_s();
  Impl impl(spec_, model_, tok_, samples_);
  RunSummary sum;
  sum.conditions = static_cast<int64_t>(spec_.conditions.size());

  // The seed scores answer tokens after the first: samples whose answer is one token are skipped
  // (counted and reported, never silently).
  std::vector<size_t> usable;
  for (size_t i = 0; i < samples_.size(); ++i) {
    if (impl.answer_ids[i].size() >= 2) usable.push_back(i);
    else ++sum.skipped_samples;
  }
  // Chunks of samples of similar length: a batched forward pads every row to its longest, and
  // padding is work that scores nothing. The order changes no result (rows are keyed by sample).
  std::stable_sort(usable.begin(), usable.end(), [&](size_t a, size_t b) {
    return samples_[a].passage.size() < samples_[b].passage.size();
  });
  if (sum.skipped_samples && options.progress)
    std::fprintf(stderr, "kvprime run: %ld sample(s) skipped: the answer is a single token (the NLL "
                 "is over answer tokens after the first)\n", static_cast<long>(sum.skipped_samples));
  const size_t B = static_cast<size_t>(std::max<int64_t>(1, spec_.batch));
  KVP_CHECK(options.shard_count >= 1 && options.shard_index >= 0 && options.shard_index < options.shard_count,
            "run: shard ", options.shard_index, " of ", options.shard_count, " does not exist");
  // This shard's chunks (all of them in a single-process run), cut before sharding so that every
  // chunk holds the samples it would hold in a single process.
  std::vector<std::vector<size_t>> chunks;
  for (size_t begin = 0, k = 0; begin < usable.size(); begin += B, ++k)
    if (static_cast<int64_t>(k % static_cast<size_t>(options.shard_count)) == options.shard_index)
      chunks.emplace_back(usable.begin() + begin, usable.begin() + std::min(usable.size(), begin + B));
  sum.samples = 0;
  for (const auto& ch : chunks) sum.samples += static_cast<int64_t>(ch.size());

  std::unique_ptr<StoreSink> own_sink;
  ResultSink* sink = options.sink;
  if (!sink) {
    own_sink = std::make_unique<StoreSink>(spec_.store_path(), spec_.name, spec_.results_identity(),
                                           options.new_run ? StoreMode::NewRun : StoreMode::Resume);
    sink = own_sink.get();
  }
  auto done = sink->done();
  const int64_t total = sum.samples * sum.conditions;
  for (const auto& ch : chunks)
    for (size_t i : ch)
      for (const auto& c : spec_.conditions)
        if (done.count({samples_[i].id, c.name})) ++sum.rows_done_before;
  Progress progress(options.progress, total, sum.rows_done_before);

  std::optional<KVCache> bos_cache;
  const int32_t bos = impl.primer.tokenize_with_bos("x")[0];
  std::map<size_t, double> pmi_baseline;  // sample -> NLL given a BOS-only cache
  const int64_t nl = model_.config().n_layer;

  // One (sample, candidate) to build and score: candidate -1 is the sample's own passage,
  // k >= 0 its k-th irrelevant passage (ranking), built and scored under the same condition.
  struct Job {
    size_t i;
    int64_t candidate;
    const std::string* passage;  // nullptr: the sample's own
  };

  PhaseClock clock(model_.device());
  for (const std::vector<size_t>& chunk : chunks) {
    for (const auto& c : spec_.conditions) {
      std::vector<Job> jobs;
      int64_t n_samples_todo = 0;
      for (size_t i : chunk) {
        if (done.count({samples_[i].id, c.name})) continue;
        ++n_samples_todo;
        jobs.push_back({i, -1, nullptr});
        if (spec_.ranking)
          for (size_t k = 0; k < samples_[i].irrelevant.size(); ++k)
            jobs.push_back({i, static_cast<int64_t>(k), &samples_[i].irrelevant[k]});
      }
      if (jobs.empty()) continue;
      const double tc = now_s();
      int64_t tokens = 0;

      clock.mark("other");
      std::vector<ConditionLayout> lay;
      for (const auto& j : jobs) lay.push_back(impl.layout(c, j.i, j.passage));
      clock.mark("tokenize");

      // ---- build ----
      // Plain bare and primed caches stay one batched cache from the build forward to the score
      // forward (no per-row tensors); conditions that edit rows one at a time split it.
      std::optional<KVCache> batched;
      std::vector<KVCache> caches;
      std::vector<at::Tensor> hidden;
      const bool primed = c.prefix.kind != PrefixKind::None;
      // A bare cache that nothing edits is scored in the forward that builds it (score_full_batch:
      // the same K/V, one forward instead of two, no cache held).
      const bool direct = !primed && !c.roundtrip_noise;
      std::vector<TokenIds> bare_rows;
      if (!primed) {
        for (const auto& L : lay) bare_rows.push_back(concat(L.prefix_ids, L.doc_ids));
        for (const auto& r : bare_rows) tokens += static_cast<int64_t>(r.size());
        if (!direct) batched = prefill_batch(model_, bare_rows);
      } else if (c.context == ContextMode::Full) {
        for (const auto& L : lay) {
          TokenIds ids = concat(L.prefix_ids, L.doc_ids);
          tokens += static_cast<int64_t>(ids.size());
          at::Tensor mask = c.mask == BuildMask::Block
                                ? block_prefix_mask(L.segment_lengths, static_cast<int64_t>(L.doc_ids.size()))
                                : at::Tensor();
          caches.push_back(prefill(model_, ids, mask));
          if (c.hide_prefix) {
            at::Tensor h = at::zeros({static_cast<int64_t>(ids.size())}, at::kLong);
            h.slice(0, 1, static_cast<int64_t>(L.prefix_ids.size())).fill_(1);
            hidden.push_back(h.to(at::kBool));
          }
        }
      } else if (c.mask == BuildMask::Block) {
        for (const auto& L : lay) {
          tokens += static_cast<int64_t>(L.prefix_ids.size() + L.doc_ids.size());
          PrimeOptions po;
          po.correct_rope = c.correct_rope;
          po.mask = block_prefix_mask(L.segment_lengths, static_cast<int64_t>(L.doc_ids.size()));
          caches.push_back(build_primed_cache(model_, L.prefix_ids, L.doc_ids, po));
        }
      } else {
        std::vector<TokenIds> pre, docs;
        for (const auto& L : lay) {
          pre.push_back(L.prefix_ids);
          docs.push_back(L.doc_ids);
          tokens += static_cast<int64_t>(L.prefix_ids.size() + L.doc_ids.size());
        }
        PrimeOptions po;
        po.correct_rope = c.correct_rope;
        batched = build_primed_batch(model_, pre, docs, po);
      }
      if (c.roundtrip_noise) {
        // Slot 0 is BOS in every row of a batched cache too; the other slots (invalid ones
        // included) go away and back.
        if (batched) batched = apply_rope_roundtrip_noise(*batched, *c.roundtrip_noise, model_);
        for (auto& k : caches) k = apply_rope_roundtrip_noise(k, *c.roundtrip_noise, model_);
      }

      clock.mark("build");
      // ---- bare caches of the same document ids: for mixing, and for the divergence measure ----
      const bool mixes = c.keys == CacheSource::Bare || c.values == CacheSource::Bare || c.value_alpha;
      std::vector<std::optional<KVCache>> bare(jobs.size());
      std::vector<bool> measure(jobs.size(), false);
      {
        std::vector<TokenIds> rows;
        std::vector<size_t> which;
        for (size_t k = 0; k < jobs.size(); ++k) {
          measure[k] = primed || c.roundtrip_noise;
          measure[k] = measure[k] && jobs[k].candidate < 0 &&
                       static_cast<int64_t>(jobs[k].i) < spec_.divergence_samples;
          if (mixes || measure[k]) {
            rows.push_back(concat(TokenIds{lay[k].prefix_ids[0]}, lay[k].doc_ids));
            which.push_back(k);
          }
        }
        if (!rows.empty()) {
          for (const auto& r : rows) tokens += static_cast<int64_t>(r.size());
          std::vector<KVCache> b = unstack_cache(prefill_batch(model_, rows));
          for (size_t m = 0; m < which.size(); ++m) bare[which[m]] = std::move(b[m]);
        }
      }
      if (mixes && batched) {
        caches = unstack_cache(*batched);
        batched.reset();
      }
      if (mixes) {
        for (const int64_t l : c.layers)
          KVP_CHECK(l < nl, spec_.source, ": condition '", c.name, "': layer ", l,
                    " does not exist (the model has ", nl, " layers)");
        std::vector<bool> in(static_cast<size_t>(nl), c.layers.empty());
        for (const int64_t l : c.layers) in[static_cast<size_t>(l)] = true;
        for (size_t k = 0; k < caches.size(); ++k) {
          const KVCache& b = *bare[k];
          if (c.value_alpha) {
            // interpolate_values(a, b, w): keys of a, values (1-w)*a + w*b. a = primed,
            // w = 1 - alpha gives values alpha*primed + (1-alpha)*bare in the chosen layers.
            std::vector<double> w(static_cast<size_t>(nl), 0.0);
            for (int64_t il = 0; il < nl; ++il)
              if (in[static_cast<size_t>(il)]) w[static_cast<size_t>(il)] = 1.0 - *c.value_alpha;
            caches[k] = interpolate_values(caches[k], b, w);
          }
          if (c.keys == CacheSource::Bare || c.values == CacheSource::Bare) {
            std::vector<int64_t> ks(static_cast<size_t>(nl), 0), vs(static_cast<size_t>(nl), 0);
            for (int64_t il = 0; il < nl; ++il) {
              if (!in[static_cast<size_t>(il)]) continue;
              ks[static_cast<size_t>(il)] = c.keys == CacheSource::Bare ? 1 : 0;
              vs[static_cast<size_t>(il)] = c.values == CacheSource::Bare ? 1 : 0;
            }
            caches[k] = select_layer_sources({&caches[k], &b}, ks, vs);
          }
        }
      }

      clock.mark("mix");
      // ---- score ----
      std::vector<AnswerScore> scores;
      if (direct || batched) {
        std::vector<TokenIds> qs, as;
        for (const auto& j : jobs) {
          qs.push_back(impl.query_ids[j.i]);
          as.push_back(impl.answer_ids[j.i]);
          tokens += static_cast<int64_t>(qs.back().size() + as.back().size());
        }
        scores = direct ? score_full_batch(model_, bare_rows, qs, as) : score_batch(model_, *batched, qs, as);
      } else {
        std::vector<ScoreRequest> reqs;
        for (size_t k = 0; k < jobs.size(); ++k) {
          ScoreRequest r;
          r.cache = &caches[k];
          r.query_ids = impl.query_ids[jobs[k].i];
          r.answer_ids = impl.answer_ids[jobs[k].i];
          if (!hidden.empty()) r.options.hidden_slots = hidden[k];
          tokens += static_cast<int64_t>(r.query_ids.size() + r.answer_ids.size());
          reqs.push_back(std::move(r));
        }
        scores = score_answers(model_, reqs);
      }

      if (c.target == ScoreTarget::Pmi) {
        if (!bos_cache) bos_cache = bos_only_cache(model_, bos);
        std::vector<ScoreRequest> base;
        std::vector<size_t> need;
        for (const auto& j : jobs)
          if (!pmi_baseline.count(j.i) && std::find(need.begin(), need.end(), j.i) == need.end()) {
            need.push_back(j.i);
            base.push_back({&*bos_cache, impl.query_ids[j.i], impl.answer_ids[j.i], {}});
          }
        if (!base.empty()) {
          auto bs = score_answers(model_, base);
          for (size_t k = 0; k < need.size(); ++k) pmi_baseline[need[k]] = bs[k].nll;
        }
      }

      // ---- NaN/inf: in a cache's valid slots, in the scored logits, in the NLL ----
      // Such a score is a failure (stored apart, reported with its sample and condition), never a
      // result that a mean would silently absorb. One host copy for the cache check.
      std::vector<bool> cache_bad(jobs.size(), false);
      {
        at::Tensor bad;
        if (batched) bad = batched->nonfinite_rows();
        else if (!caches.empty()) {
          std::vector<at::Tensor> per_row;
          for (const auto& k : caches) per_row.push_back(k.nonfinite_rows());
          bad = at::cat(per_row);
        }
        if (bad.defined()) {
          bad = bad.cpu();
          for (size_t k = 0; k < jobs.size(); ++k) cache_bad[k] = bad[static_cast<int64_t>(k)].item<bool>();
        }
      }

      clock.mark("score");
      // ---- store (one transaction per chunk and condition: all candidates of a sample at once) ----
      const double per = (now_s() - tc) / static_cast<double>(jobs.size());
      std::vector<ResultRow> rows;
      std::vector<FailureRow> failures;
      for (size_t k = 0; k < jobs.size(); ++k) {
        const size_t i = jobs[k].i;
        const ConditionLayout& L = lay[k];
        const AnswerScore& sc = scores[k];
        std::string what, detail;
        if (cache_bad[k]) {
          what = "cache";
          detail = "NaN or infinity in the keys/values of a valid cache slot (overflow in the "
                   "model's dtype? damaged weights?)";
        } else if (sc.nonfinite_logit_rows > 0) {
          what = "logits";
          detail = "the logits of " + std::to_string(sc.nonfinite_logit_rows) + " of " +
                   std::to_string(sc.n_scored) + " scored positions hold NaN or infinity";
        } else if (!std::isfinite(sc.nll)) {
          what = "nll";
          detail = "the answer NLL is " + std::to_string(sc.nll);
        } else if (c.target == ScoreTarget::Pmi && !std::isfinite(pmi_baseline.at(i))) {
          what = "baseline_nll";
          detail = "the NLL given a BOS-only cache (the PMI baseline) is " +
                   std::to_string(pmi_baseline.at(i));
        }
        if (!what.empty()) {
          failures.push_back({samples_[i].id, static_cast<int64_t>(i), c.name, jobs[k].candidate, what, detail});
          continue;
        }
        ResultRow r;
        r.sample_id = samples_[i].id;
        r.sample_index = static_cast<int64_t>(i);
        r.condition = c.name;
        r.candidate = jobs[k].candidate;
        r.nll = sc.nll;
        r.n_scored = sc.n_scored;
        r.token_nll = sc.token_nll;
        if (c.target == ScoreTarget::Pmi) {
          r.baseline_nll = pmi_baseline.at(i);
          r.pmi = r.nll - pmi_baseline.at(i);
        }
        r.prefix_tokens = static_cast<int64_t>(L.prefix_ids.size()) - 1;
        r.doc_tokens = static_cast<int64_t>(L.doc_ids.size());
        // A batched row's compact length: BOS + document (its valid slots).
        r.cache_len = direct || batched ? 1 + static_cast<int64_t>(L.doc_ids.size()) : caches[k].length();
        r.prefix_text = L.prefix_text;
        r.seconds = per;
        if (measure[k])
          r.extra = layer_divergence(batched ? cache_row(*batched, static_cast<int64_t>(k)) : caches[k], *bare[k]);
        rows.push_back(std::move(r));
      }
      if (options.stop_after_rows > 0 && sum.rows_computed + n_samples_todo > options.stop_after_rows) {
        // Testing hook: store whole samples up to the limit, then stop as a killed run would.
        std::set<std::string> ids;
        for (const auto& j : jobs) {
          if (!ids.count(samples_[j.i].id) &&
              sum.rows_computed + static_cast<int64_t>(ids.size()) >= options.stop_after_rows)
            break;
          ids.insert(samples_[j.i].id);
        }
        std::vector<ResultRow> keep;
        std::vector<FailureRow> keep_failed;
        for (auto& r : rows)
          if (ids.count(r.sample_id)) keep.push_back(std::move(r));
        for (auto& f : failures)
          if (ids.count(f.sample_id)) keep_failed.push_back(std::move(f));
        sink->put(keep, keep_failed);
        sink->finish(/*interrupted=*/true);
        sum.rows_computed += static_cast<int64_t>(ids.size());
        sum.interrupted = true;
        progress.finish();
        sum.seconds = now_s() - t0;
        return sum;
      }
      sink->put(rows, failures);
      clock.mark("store");
      for (const auto& r : rows) done.insert({r.sample_id, r.condition});
      for (const auto& f : failures) {
        done.insert({f.sample_id, f.condition});
        if (options.progress)
          std::fprintf(stderr, "\nkvprime run: sample '%s' (#%ld), condition '%s'%s: %s: not a result, "
                       "stored as a failure\n", f.sample_id.c_str(), static_cast<long>(f.sample_index),
                       f.condition.c_str(), f.candidate >= 0 ? (", candidate " + std::to_string(f.candidate)).c_str() : "",
                       f.detail.c_str());
      }
      sum.failures += static_cast<int64_t>(failures.size());
      sum.rows_computed += n_samples_todo;
      sum.tokens += tokens;
      progress.update(n_samples_todo, tokens);
    }
  }
  progress.finish();
  sink->finish(/*interrupted=*/false);
  sum.failures = sink->failures();  // this call's and earlier calls' (a resume skips them)
  sum.seconds = now_s() - t0;
  clock.print();
  return sum;
}

DatasetOptions dataset_options_for(const ExperimentSpec& spec) {
  DatasetOptions d;
  d.limit = spec.samples;
  for (const auto& c : spec.conditions)
    if (c.prefix.kind == PrefixKind::Surrogate)
      d.required.emplace("surrogates", spec.source + ": condition '" + c.name + "' (prefix = \"surrogate\")");
  if (spec.ranking) d.required.emplace("irrelevant", spec.source + ": experiment.ranking = true");
  return d;
}

LoadOptions load_options_for(const ExperimentSpec& spec) {
  LoadOptions lo;
  lo.dtype = parse_dtype(spec.dtype, spec.source + ": experiment.dtype");
  lo.device = parse_device(spec.device, spec.source + ": experiment.device");
  lo.weights = parse_weight_format(spec.weights, spec.source + ": experiment.weights");
  return lo;
}

RunSummary run_experiment(const ExperimentSpec& spec, const RunOptions& options) {
  Model model = Model::load(spec.model, load_options_for(spec));
  Tokenizer tok = Tokenizer::from_checkpoint(spec.model);
  std::vector<Sample> samples = read_dataset(spec.dataset, dataset_options_for(spec));
  ExperimentRunner runner(spec, model, tok, std::move(samples));
  return runner.run(options);
}

nlohmann::json write_experiment_report(const ExperimentSpec& spec, int64_t run_id,
                                       const std::string& out_dir) {
  ResultStore store = ResultStore::open_readonly(spec.store_path(), run_id >= 0 ? "" : spec.name, run_id);
  const RunInfo info = store.info();
  ReportInput in;
  in.title = "kvprime: " + spec.name;
  in.baseline = "bare";
  for (const auto& c : spec.conditions) in.conditions.push_back(c.name);
  in.seed = spec.seed;
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> div_sum;
  std::map<std::string, int64_t> div_n;
  for (const ResultRow& r : store.rows()) {
    if (std::find(in.conditions.begin(), in.conditions.end(), r.condition) == in.conditions.end())
      continue;  // the store may hold conditions of another configuration of the same name
    in.rows.push_back({r.sample_id, r.condition, r.nll, r.pmi, r.candidate});
    if (r.extra.is_object() && r.extra.contains("key_divergence")) {
      auto k = r.extra["key_divergence"].get<std::vector<double>>();
      auto v = r.extra["value_divergence"].get<std::vector<double>>();
      auto& acc = div_sum[r.condition];
      if (acc.first.empty()) acc = {std::vector<double>(k.size(), 0.0), std::vector<double>(v.size(), 0.0)};
      if (k.size() != acc.first.size() || v.size() != acc.second.size()) continue;
      for (size_t l = 0; l < k.size(); ++l) acc.first[l] += k[l];
      for (size_t l = 0; l < v.size(); ++l) acc.second[l] += v[l];
      ++div_n[r.condition];
    }
  }
  for (const FailureRow& f : store.failures())
    in.failures.push_back({f.sample_id, f.condition, f.candidate, f.what, f.detail});
  for (const auto& name : in.conditions) {
    auto it = div_sum.find(name);
    if (it == div_sum.end()) continue;
    LayerDivergence d;
    d.condition = name;
    for (double x : it->second.first) d.key.push_back(x / static_cast<double>(div_n[name]));
    for (double x : it->second.second) d.value.push_back(x / static_cast<double>(div_n[name]));
    in.divergence.push_back(std::move(d));
  }
  in.meta = {{"experiment", spec.source},
             {"model", spec.model},
             {"dtype", spec.dtype},
             {"device", spec.device},
             {"dataset", spec.dataset},
             {"store", spec.store_path()},
             {"run_id", info.run_id},
             {"run_status", info.status},
             {"created_at", info.created_at},
             {"kvprime_version", info.kvprime_version},
             {"config", info.config}};
  Report rep = build_report(in);
  write_report(rep, out_dir.empty() ? spec.out : out_dir);
  return rep.summary;
}

}  // namespace kvprime
