// Post-processors: TemplateProcessing, ByteLevel (offset trimming), Sequence.
#include "kvprime/core/error.h"
#include "tokenizer/pipeline.h"
#include "tokenizer/utf8.h"

namespace kvprime::tok {

namespace {

struct TemplateItem {
  bool is_sequence = false;
  std::vector<int32_t> ids;  // special token ids
  std::vector<std::string> tokens;
};

class TemplatePost : public PostProcessor {
 public:
  std::vector<TemplateItem> single;
  void process(EncodingData& e, bool add_special_tokens) const override {
    if (!add_special_tokens) return;
    EncodingData out;
    out.details = e.details;
    for (const auto& it : single) {
      if (it.is_sequence) {
        out.ids.insert(out.ids.end(), e.ids.begin(), e.ids.end());
        if (e.details)
          out.tokens.insert(out.tokens.end(), std::make_move_iterator(e.tokens.begin()),
                            std::make_move_iterator(e.tokens.end()));
        out.offsets.insert(out.offsets.end(), e.offsets.begin(), e.offsets.end());
        out.special.insert(out.special.end(), e.special.begin(), e.special.end());
      } else {
        for (size_t k = 0; k < it.ids.size(); ++k) {
          out.ids.push_back(it.ids[k]);
          if (e.details) out.tokens.push_back(it.tokens[k]);
          out.offsets.emplace_back(0, 0);
          out.special.push_back(1);
        }
      }
    }
    e = std::move(out);
  }
};

class ByteLevelPost : public PostProcessor {
 public:
  bool trim_offsets = false, add_prefix_space = false;
  void process(EncodingData& e, bool) const override {
    if (!trim_offsets || !e.details) return;
    for (size_t i = 0; i < e.ids.size(); ++i) {
      const std::string& t = e.tokens[i];
      auto is_sp = [](uint32_t cp) { return cp == 0x120 || is_white_space(cp); };
      std::vector<uint32_t> cps;
      for (size_t k = 0; k < t.size();) cps.push_back(utf8_next(t, k));
      size_t lead = 0, trail = 0;
      while (lead < cps.size() && is_sp(cps[lead])) ++lead;
      while (trail < cps.size() && is_sp(cps[cps.size() - 1 - trail])) ++trail;
      auto& off = e.offsets[i];
      if (lead > 0) {
        bool is_first = i == 0 || off.first == 0;
        if (is_first && add_prefix_space && lead == 1) lead = 0;
        off.first = std::min(off.first + lead, off.second);
      }
      if (trail > 0 && off.second >= trail) off.second = std::max(off.second - trail, off.first);
    }
  }
};

class SequencePost : public PostProcessor {
 public:
  std::vector<std::unique_ptr<PostProcessor>> parts;
  void process(EncodingData& e, bool add_special_tokens) const override {
    for (const auto& p : parts) p->process(e, add_special_tokens);
  }
};

}  // namespace

bool is_byte_level_post_processor(const json& j) {
  return j.is_object() && j.value("type", std::string()) == "ByteLevel";
}

void template_bos_eos(const json& j, std::vector<int32_t>& before, std::vector<int32_t>& after) {
  if (!j.is_object()) return;
  std::string type = j.value("type", std::string());
  if (type == "Sequence") {
    for (const auto& p : j.at("processors")) template_bos_eos(p, before, after);
    return;
  }
  if (type != "TemplateProcessing" || !j.contains("single") || !j.at("single").is_array()) return;
  bool seen_seq = false;
  for (const auto& it : j.at("single")) {
    if (it.contains("Sequence")) {
      seen_seq = true;
      continue;
    }
    if (!it.contains("SpecialToken")) continue;
    std::string name = it.at("SpecialToken").at("id").get<std::string>();
    const json& st = j.at("special_tokens");
    if (!st.contains(name)) continue;
    for (const auto& id : st.at(name).at("ids")) (seen_seq ? after : before).push_back(id.get<int32_t>());
  }
}

std::unique_ptr<PostProcessor> make_post_processor(const json& j) {
  if (j.is_null()) return nullptr;
  KVP_CHECK(j.is_object() && j.contains("type"), "tokenizer.json: post_processor without \"type\"");
  std::string type = j.at("type").get<std::string>();
  if (type == "TemplateProcessing") {
    auto t = std::make_unique<TemplatePost>();
    const json& single = j.at("single");
    KVP_CHECK(single.is_array(), "tokenizer.json: TemplateProcessing.single must be a list");
    const json& st = j.contains("special_tokens") ? j.at("special_tokens") : json::object();
    for (const auto& it : single) {
      TemplateItem item;
      if (it.contains("Sequence")) {
        std::string id = it.at("Sequence").at("id").get<std::string>();
        KVP_CHECK(id == "A", "tokenizer.json: TemplateProcessing.single uses sequence \"", id,
                  "\"; only A exists for single sequences");
        item.is_sequence = true;
      } else if (it.contains("SpecialToken")) {
        std::string name = it.at("SpecialToken").at("id").get<std::string>();
        KVP_CHECK(st.contains(name), "tokenizer.json: TemplateProcessing uses special token ",
                  json(name).dump(), " missing from its special_tokens");
        for (const auto& id : st.at(name).at("ids")) item.ids.push_back(id.get<int32_t>());
        for (const auto& tk : st.at(name).at("tokens")) item.tokens.push_back(tk.get<std::string>());
        KVP_CHECK(item.ids.size() == item.tokens.size(), "tokenizer.json: special token ",
                  json(name).dump(), " has ", item.ids.size(), " ids but ", item.tokens.size(), " tokens");
      } else {
        KVP_FAIL("tokenizer.json: TemplateProcessing item ", it.dump(), " is neither Sequence nor SpecialToken");
      }
      t->single.push_back(std::move(item));
    }
    return t;
  }
  if (type == "ByteLevel") {
    auto b = std::make_unique<ByteLevelPost>();
    b->trim_offsets = j.value("trim_offsets", true);
    b->add_prefix_space = j.value("add_prefix_space", true);
    return b;
  }
  if (type == "Sequence") {
    auto s = std::make_unique<SequencePost>();
    for (const auto& p : j.at("processors"))
      if (auto x = make_post_processor(p)) s->parts.push_back(std::move(x));
    return s;
  }
  KVP_FAIL("tokenizer.json: post_processor type \"", type,
           "\" is not supported (supported: TemplateProcessing, ByteLevel, Sequence)");
}

std::unique_ptr<PostProcessor> make_bos_eos_template(const std::string* bos, int32_t bos_id,
                                                     const std::string* eos, int32_t eos_id) {
  auto t = std::make_unique<TemplatePost>();
  if (bos) t->single.push_back(TemplateItem{false, {bos_id}, {*bos}});
  t->single.push_back(TemplateItem{true, {}, {}});
  if (eos) t->single.push_back(TemplateItem{false, {eos_id}, {*eos}});
  return t;
}

std::unique_ptr<PostProcessor> make_sequence_post_processor(
    std::vector<std::unique_ptr<PostProcessor>> parts) {
  auto s = std::make_unique<SequencePost>();
  s->parts = std::move(parts);
  return s;
}

}  // namespace kvprime::tok
