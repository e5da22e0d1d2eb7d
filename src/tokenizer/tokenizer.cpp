// Tokenizer: loads tokenizer.json (+ tokenizer_config.json) and runs the HF pipeline:
// added-token split -> normalizer -> normalized added-token split -> pre-tokenizer -> BPE ->
// post-processor; and decode.
#include "kvprime/tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "kvprime/core/error.h"
#include "tokenizer/flat_map.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/utf8.h"

namespace kvprime {

using tok::json;

struct Tokenizer::Impl {
  std::string origin;
  std::unique_ptr<tok::BpeModel> model;
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
  std::unique_ptr<tok::PostProcessor> post_processor;
  std::unique_ptr<tok::Decoder> decoder;
  std::unique_ptr<tok::AddedVocabulary> added;
  std::unordered_map<int32_t, size_t> added_by_id;  // id -> index in added->tokens()
  tok::StrIdMap added_by_content;
  size_t vocab_size = 0;
  std::optional<int32_t> bos, eos;

  void encode(std::string_view text, bool add_special, tok::EncodingData& out) const;
  const std::string* id_to_token(int32_t id) const {
    auto it = added_by_id.find(id);
    if (it != added_by_id.end()) return &added->tokens()[it->second].content;
    return model->token(id);
  }
  const int32_t* token_to_id(std::string_view t) const {
    if (const int32_t* id = added_by_content.find(t)) return id;
    return model->find(t);
  }
};

namespace {

std::string read_text_file(const std::string& path, const char* what) {
  std::error_code ec;
  KVP_CHECK(std::filesystem::exists(path, ec), what, " not found: ", path,
            " (for the test tokenizers run scripts/fetch_tokenizers.sh)");
  KVP_CHECK(!std::filesystem::is_directory(path, ec), what, " ", path,
            " is a directory; give the path of the file");
  std::ifstream f(path, std::ios::binary);
  KVP_CHECK(f.good(), "cannot open ", what, " ", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json parse_json(std::string_view text, const std::string& origin) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
    KVP_FAIL(origin, ": malformed JSON (", e.what(), ")");
  }
}

std::optional<std::string> token_content(const json& cfg, const char* key) {
  if (!cfg.contains(key)) return std::nullopt;
  const json& v = cfg.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v.at("content").is_string())
    return v.at("content").get<std::string>();
  return std::nullopt;
}

}  // namespace

Tokenizer Tokenizer::from_checkpoint(const std::string& path) {
  namespace fs = std::filesystem;
  const bool dir = fs::is_directory(path);
  const std::string file = dir ? (fs::path(path) / "tokenizer.json").string() : path;
  KVP_CHECK(fs::exists(file), "no tokenizer at '", file, "'; give a checkpoint directory holding "
            "tokenizer.json or the tokenizer.json file itself");
  const fs::path config = (dir ? fs::path(path) : fs::path(path).parent_path()) / "tokenizer_config.json";
  return from_file(file, fs::exists(config) ? config.string() : std::string());
}

Tokenizer Tokenizer::from_file(const std::string& tokenizer_json, const std::string& config) {
  std::string text = read_text_file(tokenizer_json, "tokenizer.json");
  std::string cfg_text;
  if (!config.empty()) {
    std::error_code ec;
    std::string cfg_path = config;
    if (std::filesystem::is_directory(config, ec)) {
      cfg_path = (std::filesystem::path(config) / "tokenizer_config.json").string();
      if (std::filesystem::exists(cfg_path, ec)) cfg_text = read_text_file(cfg_path, "tokenizer_config.json");
    } else {
      cfg_text = read_text_file(cfg_path, "tokenizer_config.json");
    }
  }
  return from_json(text, cfg_text, tokenizer_json);
}

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json, std::string_view config_json,
                               const std::string& origin) {
  json j = parse_json(tokenizer_json, origin);
  KVP_CHECK(j.is_object(), origin, ": a tokenizer.json must be a JSON object");
  KVP_CHECK(j.contains("model") && j.at("model").is_object(), origin,
            ": no \"model\" object (is this a Hugging Face tokenizer.json?)");
  auto im = std::make_shared<Impl>();
  im->origin = origin;
  try {
    im->model = tok::BpeModel::from_json(j.at("model"));
    im->normalizer = tok::make_normalizer(j.value("normalizer", json()));
    im->pre_tokenizer = tok::make_pre_tokenizer(j.value("pre_tokenizer", json()));
    json post = j.value("post_processor", json());
    im->decoder = tok::make_decoder(j.value("decoder", json()));

    std::vector<tok::AddedToken> added;
    if (j.contains("added_tokens") && !j.at("added_tokens").is_null()) {
      for (const auto& a : j.at("added_tokens")) {
        tok::AddedToken t;
        KVP_CHECK(a.contains("id") && a.contains("content"),
                  "added_tokens entry without id/content: ", a.dump());
        t.id = a.at("id").get<int32_t>();
        t.content = a.at("content").get<std::string>();
        t.special = a.value("special", false);
        t.lstrip = a.value("lstrip", false);
        t.rstrip = a.value("rstrip", false);
        t.normalized = a.value("normalized", !t.special);
        t.single_word = a.value("single_word", false);
        if (t.content.empty()) continue;
        added.push_back(std::move(t));
      }
    }
    im->added = std::make_unique<tok::AddedVocabulary>(std::move(added), im->normalizer.get());
    const auto& toks = im->added->tokens();
    im->vocab_size = im->model->size();
    for (size_t k = 0; k < toks.size(); ++k) {
      im->added_by_id[toks[k].id] = k;
      if (!im->added_by_content.find(toks[k].content) && !im->model->find(toks[k].content))
        ++im->vocab_size;
      im->added_by_content.set(toks[k].content, toks[k].id);
    }

    std::vector<int32_t> before, after;
    tok::template_bos_eos(post, before, after);
    if (!before.empty()) im->bos = before.front();
    if (!after.empty()) im->eos = after.front();
    im->post_processor = tok::make_post_processor(post);

    if (!config_json.empty()) {
      json cfg = parse_json(config_json, origin + " (tokenizer_config.json)");
      KVP_CHECK(cfg.is_object(), "tokenizer_config.json must be a JSON object");
      auto bos = token_content(cfg, "bos_token");
      auto eos = token_content(cfg, "eos_token");
      auto resolve = [&](const std::optional<std::string>& t, const char* what) -> std::optional<int32_t> {
        if (!t) return std::nullopt;
        const int32_t* id = im->token_to_id(*t);
        KVP_CHECK(id, "tokenizer_config.json: ", what, " ", json(*t).dump(), " is not in the vocabulary of ", origin);
        return *id;
      };
      if (bos) im->bos = resolve(bos, "bos_token");
      if (eos) im->eos = resolve(eos, "eos_token");
      bool has_bos_flag = cfg.contains("add_bos_token") && cfg.at("add_bos_token").is_boolean();
      bool has_eos_flag = cfg.contains("add_eos_token") && cfg.at("add_eos_token").is_boolean();
      if (has_bos_flag || has_eos_flag) {
        bool add_bos = has_bos_flag ? cfg.at("add_bos_token").get<bool>() : !before.empty();
        bool add_eos = has_eos_flag ? cfg.at("add_eos_token").get<bool>() : !after.empty();
        KVP_CHECK(!add_bos || im->bos, "tokenizer_config.json: add_bos_token is true but there is no bos_token");
        KVP_CHECK(!add_eos || im->eos, "tokenizer_config.json: add_eos_token is true but there is no eos_token");
        std::vector<std::unique_ptr<tok::PostProcessor>> parts;
        auto keep_byte_level = [&](const json& p) {
          if (tok::is_byte_level_post_processor(p)) parts.push_back(tok::make_post_processor(p));
        };
        keep_byte_level(post);
        if (post.is_object() && post.value("type", std::string()) == "Sequence")
          for (const auto& p : post.at("processors")) keep_byte_level(p);
        std::string bos_s = add_bos ? *im->id_to_token(*im->bos) : std::string();
        std::string eos_s = add_eos ? *im->id_to_token(*im->eos) : std::string();
        parts.push_back(tok::make_bos_eos_template(add_bos ? &bos_s : nullptr, add_bos ? *im->bos : 0,
                                                   add_eos ? &eos_s : nullptr, add_eos ? *im->eos : 0));
        im->post_processor = tok::make_sequence_post_processor(std::move(parts));
      }
    }
  } catch (const json::exception& e) {
    KVP_FAIL(origin, ": unexpected tokenizer.json structure (", e.what(), ")");
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.rfind(origin, 0) == 0) throw;
    KVP_FAIL(origin, ": ", msg);
  }
  return Tokenizer(std::move(im));
}

void Tokenizer::Impl::encode(std::string_view text, bool add_special, tok::EncodingData& out) const {
  size_t bad = tok::utf8_find_invalid(text);
  KVP_CHECK(bad == std::string_view::npos, "Tokenizer::encode: input is not valid UTF-8 (byte 0x",
            std::hex, static_cast<int>(static_cast<unsigned char>(text[bad])), std::dec,
            " at byte offset ", bad, "); decode it to UTF-8 first");
  KVP_CHECK(text.size() < 0xFFFFFFF0u, "Tokenizer::encode: input larger than 4 GiB");
  out.ids.clear();
  out.tokens.clear();
  out.offsets.clear();
  out.special.clear();

  // Segments in order: added tokens (tok >= 0) and text (tok < 0, its pieces carry the index).
  struct Segment {
    int32_t tok;  // index into added->tokens(), or -1 for text
    tok::Span span;
    std::string content;  // the matched text of an added token
  };
  thread_local std::vector<Segment> segs;
  thread_local std::vector<tok::AddedVocabulary::Match> raw, norm;
  thread_local tok::Pieces pieces;
  segs.clear();
  pieces.s.clear();
  pieces.align.clear();
  pieces.ranges.clear();

  added->split(text, false, raw);
  bool has_norm = added->has(true);
  for (const auto& m : raw) {
    if (m.id >= 0) {
      segs.push_back(Segment{m.id, {static_cast<uint32_t>(m.b), static_cast<uint32_t>(m.e)},
                             std::string(text.substr(m.b, m.e - m.b))});
      continue;
    }
    tok::NormStr n = tok::make_norm(text.substr(m.b, m.e - m.b), static_cast<uint32_t>(m.b));
    if (normalizer) normalizer->normalize(n);
    auto add_text = [&](size_t b, size_t e) {
      if (e <= b) return;
      uint32_t seg = static_cast<uint32_t>(segs.size());
      segs.push_back(Segment{-1, {n.align[b].b, n.align[e - 1].e}, {}});
      uint32_t a = static_cast<uint32_t>(pieces.s.size());
      pieces.s.append(n.s, b, e - b);
      pieces.align.insert(pieces.align.end(), n.align.begin() + b, n.align.begin() + e);
      pieces.ranges.push_back(tok::Piece{a, static_cast<uint32_t>(pieces.s.size()), seg});
    };
    if (!has_norm) {
      add_text(0, n.s.size());
      continue;
    }
    added->split(n.s, true, norm);
    for (const auto& nm : norm) {
      if (nm.id < 0) {
        add_text(nm.b, nm.e);
      } else {
        segs.push_back(Segment{nm.id, {n.align[nm.b].b, n.align[nm.e - 1].e}, n.s.substr(nm.b, nm.e - nm.b)});
      }
    }
  }
  if (pre_tokenizer && !pieces.ranges.empty()) pre_tokenizer->pre_tokenize(pieces);

  thread_local std::vector<tok::ModelToken> mt;
  size_t r = 0;
  const auto& toks = added->tokens();
  for (size_t si = 0; si < segs.size(); ++si) {
    const Segment& sg = segs[si];
    if (sg.tok >= 0) {
      out.ids.push_back(toks[sg.tok].id);
      if (out.details) out.tokens.push_back(sg.content);
      out.offsets.emplace_back(sg.span.b, sg.span.e);
      out.special.push_back(0);
      continue;
    }
    for (; r < pieces.ranges.size() && pieces.ranges[r].seg == si; ++r) {
      const tok::Piece& p = pieces.ranges[r];
      mt.clear();
      model->tokenize(std::string_view(pieces.s.data() + p.a, p.b - p.a), mt);
      for (const auto& t : mt) {
        out.ids.push_back(t.id);
        if (out.details) {
          const std::string* s = model->token(t.id);
          out.tokens.push_back(s ? *s : std::string());
        }
        out.offsets.emplace_back(pieces.align[p.a + t.b].b, pieces.align[p.a + t.e - 1].e);
        out.special.push_back(0);
      }
    }
  }
  if (post_processor) post_processor->process(out, add_special);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  tok::EncodingData e;
  e.details = false;
  impl_->encode(text, add_special_tokens, e);
  return std::move(e.ids);
}

Encoding Tokenizer::encode_with_offsets(std::string_view text, bool add_special_tokens) const {
  tok::EncodingData e;
  impl_->encode(text, add_special_tokens, e);
  Encoding out;
  out.ids = std::move(e.ids);
  out.tokens = std::move(e.tokens);
  out.offsets = std::move(e.offsets);
  out.special_tokens_mask = std::move(e.special);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::string* t = impl_->id_to_token(id);
    if (!t) continue;
    if (skip_special_tokens && is_special(id)) continue;
    tokens.push_back(*t);
  }
  if (!impl_->decoder) {
    std::string out;
    for (size_t k = 0; k < tokens.size(); ++k) {
      if (k) out += ' ';
      out += tokens[k];
    }
    return out;
  }
  impl_->decoder->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

std::optional<std::string> Tokenizer::id_to_token(int32_t id) const {
  const std::string* t = impl_->id_to_token(id);
  if (!t) return std::nullopt;
  return *t;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  const int32_t* id = impl_->token_to_id(token);
  if (!id) return std::nullopt;
  return *id;
}

size_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }

bool Tokenizer::is_special(int32_t id) const {
  auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && impl_->added->tokens()[it->second].special;
}

}  // namespace kvprime
