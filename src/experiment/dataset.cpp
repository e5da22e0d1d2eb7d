#include "kvprime/experiment/dataset.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>
#include <vector>

#include "kvprime/core/error.h"
#include "tokenizer/utf8.h"

namespace kvprime {

namespace {

using json = nlohmann::json;

const char* type_name(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();  // "null", "boolean", "string", "array", "object"
}

// `v` for a message: short, on one line.
std::string preview(const json& v, size_t max_chars = 60) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > max_chars) s = s.substr(0, max_chars) + "...";
  return s;
}

std::string strip_json_prefix(const std::string& what) {
  // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ..." -> from "syntax"
  auto colon = what.find(": ");
  return colon == std::string::npos ? what : what.substr(colon + 2);
}

bool blank(const std::string& s) {
  for (unsigned char c : s)
    if (!(c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')) return false;
  return true;
}

// One line being read: names it in every message.
struct LineCtx {
  const std::string& origin;
  int64_t line;
  std::string id;  // once known

  std::string where() const {
    std::string w = origin + ":" + std::to_string(line);
    if (!id.empty()) w += " (sample '" + id + "')";
    return w;
  }
};

// Parses one line, refusing an object key given twice at any depth (nlohmann keeps the last one
// silently, which would hide e.g. two "answer" fields).
json parse_line(const std::string& text, const LineCtx& ctx) {
  std::vector<std::set<std::string>> keys;
  std::string duplicate;
  json::parser_callback_t cb = [&](int, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) keys.emplace_back();
    else if (ev == json::parse_event_t::object_end) { if (!keys.empty()) keys.pop_back(); }
    else if (ev == json::parse_event_t::key && !keys.empty() && duplicate.empty() &&
             !keys.back().insert(parsed.get<std::string>()).second)
      duplicate = parsed.get<std::string>();
    return true;
  };
  json v;
  try {
    v = json::parse(text, cb);
  } catch (const json::out_of_range& e) {  // a number beyond double/int64 (1e999): found by fuzzing
    KVP_FAIL(ctx.where(), ": invalid JSON: ", strip_json_prefix(e.what()),
             "; numbers must fit a 64-bit integer or a double");
  } catch (const json::parse_error& e) {
    std::string hint = "each line must be one complete JSON object (JSON Lines)";
    const size_t first = text.find_first_not_of(" \t");
    if (ctx.line == 1 && first != std::string::npos && text[first] == '[')
      hint = "the file looks like one JSON array; kvprime reads JSON Lines, one object per line "
             "(convert it with: jq -c '.[]' file.json > file.jsonl)";
    KVP_FAIL(ctx.where(), ": invalid JSON at column ", e.byte, ": ", strip_json_prefix(e.what()),
             "; ", hint);
  }
  KVP_CHECK(duplicate.empty(), ctx.where(), ": key '", duplicate,
            "' appears twice in one object (JSON parsers keep only one of them); remove one");
  return v;
}

std::string required_string(const json& obj, const char* field, const LineCtx& ctx) {
  auto it = obj.find(field);
  KVP_CHECK(it != obj.end() && !it->is_null(), ctx.where(), ": field '", field,
            "' is missing; every sample needs non-empty \"passage\", \"query\" and \"answer\" strings");
  KVP_CHECK(it->is_string(), ctx.where(), ": field '", field, "': expected a string, got ",
            type_name(*it), " ", preview(*it),
            it->is_number() ? " (write it as a string, in quotes)" : "");
  const std::string& s = it->get_ref<const std::string&>();
  KVP_CHECK(!blank(s), ctx.where(), ": field '", field,
            "' is empty; give it a text or drop the sample");
  return s;
}

// An optional array of non-empty strings (null or absent: empty).
std::vector<std::string> string_array(const json& obj, const char* field, const LineCtx& ctx,
                                      const char* what) {
  std::vector<std::string> out;
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) return out;
  KVP_CHECK(it->is_array(), ctx.where(), ": field '", field, "': expected an array of ", what,
            " (strings), got ", type_name(*it), " ", preview(*it),
            it->is_string() ? " (wrap a single one in [ ])" : "");
  for (size_t k = 0; k < it->size(); ++k) {
    const json& e = (*it)[k];
    KVP_CHECK(e.is_string(), ctx.where(), ": field '", field, "[", k, "]': expected a string (",
              what, "), got ", type_name(e), " ", preview(e));
    KVP_CHECK(!blank(e.get_ref<const std::string&>()), ctx.where(), ": field '", field, "[", k,
              "]' is empty; remove it or give a text");
    out.push_back(e.get<std::string>());
  }
  return out;
}

}  // namespace

std::vector<Sample> parse_dataset(const std::string& text, const std::string& origin,
                                  const DatasetOptions& options) {
  KVP_CHECK(options.limit >= 0, "dataset ", origin, ": limit must be >= 0 (0 = all samples), got ",
            options.limit);
  std::vector<Sample> samples;
  std::unordered_map<std::string, size_t> by_id;  // id -> index in `samples`

  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line_no == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);
    if (blank(line)) continue;

    LineCtx ctx{origin, line_no, {}};
    size_t bad = tok::utf8_find_invalid(line);
    KVP_CHECK(bad == std::string::npos, ctx.where(), ": invalid UTF-8 at column ", bad + 1,
              " (byte 0x", std::hex, static_cast<int>(static_cast<unsigned char>(line[bad])), std::dec,
              "); the dataset must be UTF-8 text: re-encode the file (e.g. iconv -f latin1 -t utf-8)");
    json obj = parse_line(line, ctx);
    KVP_CHECK(obj.is_object(), ctx.where(), ": expected a JSON object {\"passage\": ..., \"query\": ..., "
              "\"answer\": ...}, got ", type_name(obj), " ", preview(obj));

    Sample s;
    s.line = line_no;
    auto id_it = obj.find("id");
    if (id_it == obj.end() || id_it->is_null()) {
      s.id = "line-" + std::to_string(line_no);
    } else if (id_it->is_string()) {
      s.id = id_it->get<std::string>();
      KVP_CHECK(!blank(s.id), ctx.where(), ": field 'id' is empty; give a unique id or drop the "
                "field (the id is then \"line-", line_no, "\")");
    } else if (id_it->is_number_integer()) {
      s.id = id_it->dump();
    } else {
      KVP_FAIL(ctx.where(), ": field 'id': expected a string or an integer, got ", type_name(*id_it),
               " ", preview(*id_it));
    }
    ctx.id = s.id;
    auto [dup, fresh] = by_id.emplace(s.id, samples.size());
    KVP_CHECK(fresh, ctx.where(), ": duplicate id '", s.id, "' (also line ", samples[dup->second].line,
              "); ids must be unique: rename one of them");

    s.passage = required_string(obj, "passage", ctx);
    s.query = required_string(obj, "query", ctx);
    s.answer = required_string(obj, "answer", ctx);
    s.surrogates = string_array(obj, "surrogates", ctx, "surrogate queries");
    s.irrelevant_ids = string_array(obj, "irrelevant", ctx, "ids of other samples");
    s.irrelevant = string_array(obj, "irrelevant_passages", ctx, "passages");
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      static const std::set<std::string> known = {"id", "passage", "query", "answer", "surrogates",
                                                  "irrelevant", "irrelevant_passages"};
      if (!known.count(it.key())) s.extra[it.key()] = it.value();
    }
    samples.push_back(std::move(s));
  }
  KVP_CHECK(!samples.empty(), "dataset ", origin, ": no samples (the file is empty or has only blank "
            "lines); expected JSON Lines, one object {\"passage\", \"query\", \"answer\"} per line");

  // Irrelevant ids -> passages (before the limit: they may point to any line of the file).
  for (auto& s : samples) {
    std::vector<std::string> passages;
    for (const auto& rid : s.irrelevant_ids) {
      auto it = by_id.find(rid);
      LineCtx ctx{origin, s.line, s.id};
      KVP_CHECK(it != by_id.end(), ctx.where(), ": field 'irrelevant': no sample has id '", rid,
                "'; \"irrelevant\" holds ids of other samples of this file — to give passage texts, "
                "name the field \"irrelevant_passages\"");
      KVP_CHECK(rid != s.id, ctx.where(), ": field 'irrelevant' names the sample itself ('", rid,
                "'); an irrelevant passage must come from another sample");
      passages.push_back(samples[it->second].passage);
    }
    s.irrelevant.insert(s.irrelevant.begin(), passages.begin(), passages.end());
  }

  if (options.limit > 0 && static_cast<size_t>(options.limit) < samples.size())
    samples.resize(static_cast<size_t>(options.limit));
  for (size_t i = 0; i < samples.size(); ++i) {
    Sample& s = samples[i];
    s.index = static_cast<int64_t>(i);
    for (const auto& [field, why] : options.required) {
      LineCtx ctx{origin, s.line, s.id};
      const std::string reason = why.empty() ? std::string() : " (needed by " + why + ")";
      if (field == "surrogates") {
        KVP_CHECK(!s.surrogates.empty(), ctx.where(), ": no \"surrogates\"", reason,
                  "; give every sample a non-empty \"surrogates\" array");
      } else if (field == "irrelevant") {
        KVP_CHECK(!s.irrelevant.empty(), ctx.where(), ": no irrelevant passages", reason,
                  "; give every sample \"irrelevant\" (ids of other samples) or "
                  "\"irrelevant_passages\" (texts)");
      } else if (field != "id" && field != "passage" && field != "query" && field != "answer") {
        auto it = s.extra.find(field);
        KVP_CHECK(it != s.extra.end() && !it->is_null(), ctx.where(), ": field '", field,
                  "' is missing", reason, "; add it to every sample");
      }
    }
  }
  return samples;
}

std::vector<Sample> read_dataset(const std::string& path, const DatasetOptions& options) {
  std::error_code ec;
  KVP_CHECK(!std::filesystem::is_directory(path, ec), "dataset ", path,
            ": is a directory; expected a JSON Lines file (e.g. data/demo/qa.jsonl)");
  std::ifstream in(path, std::ios::binary);
  KVP_CHECK(in.good(), "dataset ", path, ": cannot open the file (missing or unreadable); check the "
            "path (relative paths in an experiment file are relative to that file's directory)");
  std::ostringstream buf;
  buf << in.rdbuf();
  KVP_CHECK(!in.bad(), "dataset ", path, ": read error");
  return parse_dataset(buf.str(), path, options);
}

}  // namespace kvprime
