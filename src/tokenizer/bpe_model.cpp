// BPE model (HF models/bpe): merges applied by rank (lowest first, leftmost on ties), byte
// fallback, unk fusing, ignore_merges, and a word cache.
#include <algorithm>
#include <array>
#include <cstdio>
#include <optional>
#include <mutex>
#include <queue>
#include <unordered_map>

#include "kvprime/core/error.h"
#include "tokenizer/flat_map.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/utf8.h"

namespace kvprime::tok {

struct BpeModel::Impl {
  StrIdMap vocab;
  std::vector<std::string> vocab_r;  // id -> token ("" where unused)
  std::vector<bool> has_id;
  PairMap merges;
  std::optional<int32_t> unk_id;
  std::string unk_token;
  bool fuse_unk = false, byte_fallback = false, ignore_merges = false;
  std::string prefix, suffix;  // continuing_subword_prefix, end_of_word_suffix
  std::array<int32_t, 256> byte_ids{};  // <0xNN> ids, -1 where missing
  bool all_byte_ids = false;

  // Word cache: word -> packed (id, byte length) pairs.
  static constexpr size_t kCacheCapacity = 1 << 16;
  static constexpr size_t kCacheMaxWord = 256;
  mutable std::mutex cache_mu;
  mutable std::unordered_map<std::string, std::vector<std::pair<int32_t, uint32_t>>> cache;

  void merge_word(std::string_view w, std::vector<std::pair<int32_t, uint32_t>>& out) const;
};

namespace {
struct Sym {
  int32_t id;
  int32_t prev, next;
  uint32_t len;  // bytes; 0 = merged away
};
struct Cand {
  uint32_t rank;
  uint32_t pos;
  int32_t new_id;
  bool operator<(const Cand& o) const {  // priority_queue is a max-heap: invert
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};
struct Scratch {
  std::vector<Sym> syms;
  std::vector<Cand> heap;
  std::string buf;
};
}  // namespace

void BpeModel::Impl::merge_word(std::string_view w,
                                std::vector<std::pair<int32_t, uint32_t>>& out) const {
  thread_local Scratch sc;
  auto& syms = sc.syms;
  syms.clear();
  int32_t unk_pending = -1;  // pending unk token id (-1: none) and its byte length
  uint32_t unk_len = 0;
  auto push = [&](int32_t id, uint32_t len) {
    int32_t idx = static_cast<int32_t>(syms.size());
    syms.push_back(Sym{id, idx - 1, -1, len});
    if (idx > 0) syms[idx - 1].next = idx;
  };
  size_t i = 0;
  while (i < w.size()) {
    size_t len = utf8_len(static_cast<unsigned char>(w[i]));
    std::string_view c = w.substr(i, len);
    bool first = i == 0, last = i + len == w.size();
    const int32_t* id;
    if ((first || prefix.empty()) && (!last || suffix.empty())) {
      id = vocab.find(c);
    } else {
      sc.buf.clear();
      if (!first) sc.buf += prefix;
      sc.buf.append(c);
      if (last) sc.buf += suffix;
      id = vocab.find(sc.buf);
    }
    i += len;
    if (id) {
      if (unk_pending >= 0) {
        push(unk_pending, unk_len);
        unk_pending = -1;
      }
      push(*id, static_cast<uint32_t>(len));
      continue;
    }
    if (byte_fallback) {
      bool ok = true;
      for (unsigned char b : c) ok = ok && byte_ids[b] >= 0;
      if (ok) {
        // (HF adds the byte tokens without flushing a pending unk first.)
        for (unsigned char b : c) push(byte_ids[b], 1);
        continue;
      }
    }
    if (unk_id) {
      if (unk_pending >= 0 && fuse_unk) {
        unk_len += static_cast<uint32_t>(len);
      } else {
        if (unk_pending >= 0) push(unk_pending, unk_len);
        unk_pending = *unk_id;
        unk_len = static_cast<uint32_t>(len);
      }
    }
  }
  if (unk_pending >= 0) push(unk_pending, unk_len);

  // Merge loop.
  auto& heap = sc.heap;
  heap.clear();
  for (size_t k = 0; k + 1 < syms.size(); ++k) {
    if (const PairMap::Value* m = merges.find(syms[k].id, syms[k + 1].id))
      heap.push_back(Cand{m->rank, static_cast<uint32_t>(k), m->id});
  }
  std::make_heap(heap.begin(), heap.end());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end());
    Cand top = heap.back();
    heap.pop_back();
    Sym& cur = syms[top.pos];
    if (cur.len == 0 || cur.next < 0) continue;
    Sym& right = syms[cur.next];
    const PairMap::Value* m = merges.find(cur.id, right.id);
    if (!m || m->id != top.new_id) continue;
    cur.id = top.new_id;
    cur.len += right.len;
    right.len = 0;
    cur.next = right.next;
    if (cur.next >= 0) syms[cur.next].prev = static_cast<int32_t>(top.pos);
    if (cur.prev >= 0) {
      if (const PairMap::Value* pm = merges.find(syms[cur.prev].id, cur.id)) {
        heap.push_back(Cand{pm->rank, static_cast<uint32_t>(cur.prev), pm->id});
        std::push_heap(heap.begin(), heap.end());
      }
    }
    if (cur.next >= 0) {
      if (const PairMap::Value* nm = merges.find(cur.id, syms[cur.next].id)) {
        heap.push_back(Cand{nm->rank, top.pos, nm->id});
        std::push_heap(heap.begin(), heap.end());
      }
    }
  }
  for (const Sym& s : syms)
    if (s.len) out.emplace_back(s.id, s.len);
}

BpeModel::~BpeModel() = default;

std::unique_ptr<BpeModel> BpeModel::from_json(const json& m) {
  std::string type = m.value("type", std::string("BPE"));
  KVP_CHECK(type == "BPE", "tokenizer.json: model type \"", type,
            "\" is not supported (supported: BPE)");
  KVP_CHECK(m.contains("vocab") && m.at("vocab").is_object(),
            "tokenizer.json: model.vocab is missing or not an object");
  KVP_CHECK(m.contains("merges") && m.at("merges").is_array(),
            "tokenizer.json: model.merges is missing or not an array (a BPE model needs its merges)");
  if (m.contains("dropout") && !m.at("dropout").is_null())
    KVP_CHECK(m.at("dropout").get<double>() == 0.0, "tokenizer.json: BPE dropout is not supported");

  std::unique_ptr<BpeModel> model(new BpeModel());
  model->impl_ = std::make_unique<Impl>();
  Impl& im = *model->impl_;
  const json& vocab = m.at("vocab");
  im.vocab.reserve(vocab.size());
  int32_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    KVP_CHECK(it.value().is_number_integer() && it.value().get<int64_t>() >= 0,
              "tokenizer.json: model.vocab[", json(it.key()).dump(), "] is not a non-negative integer id");
    int32_t id = it.value().get<int32_t>();
    im.vocab.set(it.key(), id);
    max_id = std::max(max_id, id);
  }
  im.vocab_r.assign(static_cast<size_t>(max_id + 1), std::string());
  im.has_id.assign(static_cast<size_t>(max_id + 1), false);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    int32_t id = it.value().get<int32_t>();
    im.vocab_r[id] = it.key();
    im.has_id[id] = true;
  }

  const json& merges = m.at("merges");
  im.merges.reserve(merges.size());
  std::string joined;
  uint32_t rank = 0;
  for (const auto& mj : merges) {
    std::string_view a, b;
    std::string sa, sb;
    if (mj.is_string()) {
      const std::string& s = mj.get_ref<const std::string&>();
      size_t sp = s.find(' ');
      KVP_CHECK(sp != std::string::npos && s.find(' ', sp + 1) == std::string::npos,
                "tokenizer.json: merge #", rank, " ", json(s).dump(),
                " is not two tokens separated by one space");
      sa = s.substr(0, sp);
      sb = s.substr(sp + 1);
    } else {
      KVP_CHECK(mj.is_array() && mj.size() == 2 && mj[0].is_string() && mj[1].is_string(),
                "tokenizer.json: merge #", rank, " must be \"a b\" or [\"a\", \"b\"], got ",
                mj.dump().substr(0, 100));
      sa = mj[0].get<std::string>();
      sb = mj[1].get<std::string>();
    }
    a = sa;
    b = sb;
    const int32_t* ia = im.vocab.find(a);
    const int32_t* ib = im.vocab.find(b);
    joined.assign(a);
    joined.append(b);
    const int32_t* in = im.vocab.find(joined);
    KVP_CHECK(ia && ib && in, "tokenizer.json: merge #", rank, " (", json(sa).dump(), ", ",
              json(sb).dump(), ") uses a token missing from model.vocab: ",
              json(!ia ? sa : !ib ? sb : joined).dump());
    im.merges.set(*ia, *ib, PairMap::Value{rank, *in});
    ++rank;
  }

  auto str_or_empty = [&](const char* key) {
    return m.contains(key) && m.at(key).is_string() ? m.at(key).get<std::string>() : std::string();
  };
  im.prefix = str_or_empty("continuing_subword_prefix");
  im.suffix = str_or_empty("end_of_word_suffix");
  im.fuse_unk = m.value("fuse_unk", false);
  im.byte_fallback = m.value("byte_fallback", false);
  im.ignore_merges = m.value("ignore_merges", false);
  im.unk_token = str_or_empty("unk_token");
  if (!im.unk_token.empty()) {
    const int32_t* u = im.vocab.find(im.unk_token);
    KVP_CHECK(u, "tokenizer.json: model.unk_token ", json(im.unk_token).dump(),
              " is not in model.vocab");
    im.unk_id = *u;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const int32_t* id = im.vocab.find(name);
    im.byte_ids[b] = id ? *id : -1;
  }
  return model;
}

void BpeModel::tokenize(std::string_view word, std::vector<ModelToken>& out) const {
  const Impl& im = *impl_;
  if (word.empty()) return;
  if (im.ignore_merges) {
    if (const int32_t* id = im.vocab.find(word)) {
      out.push_back(ModelToken{*id, 0, static_cast<uint32_t>(word.size())});
      return;
    }
  }
  thread_local std::vector<std::pair<int32_t, uint32_t>> res;
  res.clear();
  bool cacheable = word.size() < Impl::kCacheMaxWord;
  bool hit = false;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(im.cache_mu);
    auto it = im.cache.find(std::string(word));
    if (it != im.cache.end()) {
      res = it->second;
      hit = true;
    }
  }
  if (!hit) {
    im.merge_word(word, res);
    if (cacheable) {
      std::lock_guard<std::mutex> lock(im.cache_mu);
      if (im.cache.size() < Impl::kCacheCapacity) im.cache.emplace(std::string(word), res);
    }
  }
  uint32_t pos = 0;
  for (auto [id, len] : res) {
    out.push_back(ModelToken{id, pos, pos + len});
    pos += len;
  }
}

const int32_t* BpeModel::find(std::string_view token) const { return impl_->vocab.find(token); }

const std::string* BpeModel::token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->vocab_r.size() || !impl_->has_id[id]) return nullptr;
  return &impl_->vocab_r[id];
}

size_t BpeModel::size() const { return impl_->vocab.size(); }

void BpeModel::for_each(const std::function<void(std::string_view, int32_t)>& f) const {
  impl_->vocab.for_each(f);
}

}  // namespace kvprime::tok
