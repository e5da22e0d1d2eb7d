#include "kvprime/prime/experiment_config.h"

#include "kvprime/core/error.h"

namespace kvprime {

std::string format_template(const std::string& tpl, const std::map<std::string, std::string>& values,
                            const std::string& what) {
  std::string out;
  out.reserve(tpl.size() + 64);
  for (size_t i = 0; i < tpl.size(); ++i) {
    const char c = tpl[i];
    if ((c == '{' || c == '}') && i + 1 < tpl.size() && tpl[i + 1] == c) {  // "{{" / "}}"
      out += c;
      ++i;
      continue;
    }
    if (c == '}') KVP_FAIL(what, ": unmatched '}' at byte ", i, " of \"", tpl, "\"; write '}}' for a brace");
    if (c != '{') {
      out += c;
      continue;
    }
    const size_t close = tpl.find('}', i + 1);
    KVP_CHECK(close != std::string::npos, what, ": unclosed '{' at byte ", i, " of \"", tpl,
              "\"; write '{{' for a literal brace");
    const std::string name = tpl.substr(i + 1, close - i - 1);
    auto it = values.find(name);
    if (it == values.end()) {
      std::string known;
      for (const auto& kv : values) known += (known.empty() ? "" : ", ") + ("{" + kv.first + "}");
      KVP_FAIL(what, ": unknown placeholder {", name, "} in \"", tpl, "\"; this template knows ",
               known.empty() ? std::string("no placeholders") : known);
    }
    out += it->second;
    i = close;
  }
  return out;
}

}  // namespace kvprime
