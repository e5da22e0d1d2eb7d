// UTF-8 helpers, the GPT-2 byte<->char table, White_Space, NFC/NFD (internal).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvprime::tok {

// Length of the UTF-8 sequence that starts with `lead` (1 for continuation/invalid bytes).
inline size_t utf8_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

// Decodes the code point at s[i] (valid UTF-8 assumed) and advances i.
inline uint32_t utf8_next(std::string_view s, size_t& i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) { ++i; return c; }
  size_t n = utf8_len(c);
  uint32_t cp = n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += n;
  return cp;
}

inline void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Byte offset of the first byte that is not part of a valid UTF-8 sequence, or npos.
size_t utf8_find_invalid(std::string_view s);
// Decodes bytes as UTF-8 replacing each maximal invalid subpart by U+FFFD (Rust from_utf8_lossy).
std::string utf8_lossy(std::string_view bytes);
inline bool utf8_valid(std::string_view s) { return utf8_find_invalid(s) == std::string_view::npos; }

// Unicode White_Space (what Oniguruma's and Rust regex's \s match).
bool is_white_space(uint32_t cp);
// The White_Space set as the inside of a PCRE2 character class.
const char* white_space_class_body();

// GPT-2 byte-level alphabet: byte -> its char (UTF-8), and char -> byte (-1 if not in the table).
const std::array<std::string, 256>& byte_level_chars();
int byte_level_byte(uint32_t cp);

// Canonical composition / decomposition of a sequence of code points. Each output code point
// carries the index of the input code point it came from (a composed one: its starter's).
struct SrcCp {
  uint32_t cp;
  uint32_t src;
};
// True when NFC/NFD cannot change the text (fast path: every cp < U+0300 or otherwise inert).
bool nfc_quick_inert(std::string_view s);
void nfd_decompose(std::vector<SrcCp>& cps);  // in place: full canonical decomposition + ordering
void nfc_compose(std::vector<SrcCp>& cps);    // in place: canonical composition (input is NFD)

}  // namespace kvprime::tok
