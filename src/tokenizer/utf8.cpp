#include "tokenizer/utf8.h"

#include <algorithm>

namespace kvprime::tok {

namespace {
struct CccRange {
  uint32_t lo, hi;
  uint8_t ccc;
};
struct DecompEntry {
  uint32_t cp;
  uint32_t off;
  uint32_t len;
};
struct CompEntry {
  uint32_t first, second, composed;
};
#include "tokenizer/unicode_tables.inc"

constexpr uint32_t SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
constexpr uint32_t LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount,
                   SCount = LCount * NCount;

uint8_t ccc_of(uint32_t cp) {
  if (cp < 0x300) return 0;
  auto it = std::upper_bound(std::begin(kCccRanges), std::end(kCccRanges), cp,
                             [](uint32_t v, const CccRange& r) { return v < r.lo; });
  if (it == std::begin(kCccRanges)) return 0;
  --it;
  return cp <= it->hi ? it->ccc : 0;
}

const DecompEntry* decomp_of(uint32_t cp) {
  if (cp < 0xC0) return nullptr;
  auto it = std::lower_bound(std::begin(kDecomp), std::end(kDecomp), cp,
                             [](const DecompEntry& e, uint32_t v) { return e.cp < v; });
  return (it != std::end(kDecomp) && it->cp == cp) ? it : nullptr;
}

// Bitmap of code points that are the second element of a primary composite.
struct SecondSet {
  std::vector<bool> bits;
  SecondSet() : bits(0x110000, false) {
    for (const auto& c : kComp) bits[c.second] = true;
  }
};
const SecondSet& seconds() {
  static const SecondSet s;
  return s;
}

uint32_t compose_pair(uint32_t a, uint32_t b) {
  if (a >= LBase && a < LBase + LCount && b >= VBase && b < VBase + VCount)
    return SBase + ((a - LBase) * VCount + (b - VBase)) * TCount;
  if (a >= SBase && a < SBase + SCount && (a - SBase) % TCount == 0 && b > TBase &&
      b < TBase + TCount)
    return a + (b - TBase);
  auto it = std::lower_bound(std::begin(kComp), std::end(kComp), std::make_pair(a, b),
                             [](const CompEntry& e, const std::pair<uint32_t, uint32_t>& v) {
                               return e.first < v.first || (e.first == v.first && e.second < v.second);
                             });
  if (it != std::end(kComp) && it->first == a && it->second == b) return it->composed;
  return 0;
}
}  // namespace

size_t utf8_find_invalid(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) { ++i; continue; }
    size_t len;
    uint32_t min;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
    else return i;
    if (i + len > n) return i;
    uint32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return std::string_view::npos;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size(), i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) { out.push_back(static_cast<char>(c)); ++i; continue; }
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) { len = 3; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) len = 3;
    else if (c == 0xED) { len = 3; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) len = 3;
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) { len = 4; hi = 0x8F; }
    if (len == 0) { out += "\xEF\xBF\xBD"; ++i; continue; }
    // Maximal subpart: consume continuation bytes while they are valid.
    size_t k = 1;
    bool ok = true;
    for (; k < len; ++k) {
      if (i + k >= n) { ok = false; break; }
      unsigned char b = p[i + k];
      unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (b < l || b > h) { ok = false; break; }
    }
    if (ok) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += "\xEF\xBF\xBD";
      i += k;
    }
  }
  return out;
}

bool is_white_space(uint32_t cp) {
  if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
  if (cp < 0x85) return false;
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

const char* white_space_class_body() {
  return "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
         "\\x{202F}\\x{205F}\\x{3000}";
}

namespace {
struct ByteTables {
  std::array<std::string, 256> chars;
  std::vector<int> rev;  // cp -> byte for cp < 0x200
  ByteTables() : rev(0x200, -1) {
    std::array<bool, 256> direct{};
    for (int b = '!'; b <= '~'; ++b) direct[b] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) direct[b] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) direct[b] = true;
    uint32_t n = 0;
    for (int b = 0; b < 256; ++b) {
      uint32_t cp = direct[b] ? static_cast<uint32_t>(b) : 256 + n++;
      utf8_append(chars[b], cp);
      rev[cp] = b;
    }
  }
};
const ByteTables& byte_tables() {
  static const ByteTables t;
  return t;
}
}  // namespace

const std::array<std::string, 256>& byte_level_chars() { return byte_tables().chars; }
int byte_level_byte(uint32_t cp) {
  const auto& r = byte_tables().rev;
  return cp < r.size() ? r[cp] : -1;
}

bool nfc_quick_inert(std::string_view s) {
  const auto& sec = seconds().bits;
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0xCC) {  // < U+0300
      i += utf8_len(c);
      continue;
    }
    uint32_t cp = utf8_next(s, i);
    if (ccc_of(cp) != 0 || sec[cp] || decomp_of(cp) != nullptr ||
        (cp >= SBase && cp < SBase + SCount) || (cp >= VBase && cp < VBase + VCount) ||
        (cp > TBase && cp < TBase + TCount))
      return false;
  }
  return true;
}

void nfd_decompose(std::vector<SrcCp>& cps) {
  std::vector<SrcCp> out;
  out.reserve(cps.size() + 8);
  for (const auto& c : cps) {
    if (c.cp >= SBase && c.cp < SBase + SCount) {
      uint32_t s = c.cp - SBase;
      out.push_back({LBase + s / NCount, c.src});
      out.push_back({VBase + (s % NCount) / TCount, c.src});
      if (s % TCount) out.push_back({TBase + s % TCount, c.src});
    } else if (const DecompEntry* d = decomp_of(c.cp)) {
      for (uint32_t k = 0; k < d->len; ++k) out.push_back({kDecompData[d->off + k], c.src});
    } else {
      out.push_back(c);
    }
  }
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  size_t i = 0;
  while (i < out.size()) {
    if (ccc_of(out[i].cp) == 0) { ++i; continue; }
    size_t j = i;
    while (j < out.size() && ccc_of(out[j].cp) != 0) ++j;
    // HF's alignments stay positional when marks are reordered: the k-th output mark keeps the
    // source of the k-th input mark (golden: qwen3 "q" U+0307 U+0323).
    std::vector<uint32_t> srcs;
    for (size_t k = i; k < j; ++k) srcs.push_back(out[k].src);
    std::stable_sort(out.begin() + i, out.begin() + j,
                     [](const SrcCp& a, const SrcCp& b) { return ccc_of(a.cp) < ccc_of(b.cp); });
    for (size_t k = i; k < j; ++k) out[k].src = srcs[k - i];
    i = j;
  }
  cps.swap(out);
}

void nfc_compose(std::vector<SrcCp>& cps) {
  if (cps.empty()) return;
  std::vector<SrcCp> out;
  out.reserve(cps.size());
  long starter = -1;   // index in out of the last starter
  int last_ccc = -1;   // ccc of the last char appended after the starter (-1: none)
  for (const auto& c : cps) {
    int ccc = ccc_of(c.cp);
    if (starter >= 0) {
      bool blocked = last_ccc != -1 && (last_ccc == 0 || last_ccc >= ccc);
      if (!blocked) {
        uint32_t comp = compose_pair(out[starter].cp, c.cp);
        if (comp) {
          out[starter].cp = comp;
          continue;
        }
      }
    }
    if (ccc == 0) {
      starter = static_cast<long>(out.size());
      last_ccc = -1;
    } else {
      last_ccc = ccc;
    }
    out.push_back(c);
  }
  cps.swap(out);
}

}  // namespace kvprime::tok
