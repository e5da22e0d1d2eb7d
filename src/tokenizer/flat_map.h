// Open-addressing hash maps for the tokenizer's hot lookups (internal).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kvprime::tok {

inline uint64_t hash_bytes(std::string_view s) {
  // FNV-1a over 8-byte words, then a final mix: fast for the short strings of a vocabulary.
  uint64_t h = 0xcbf29ce484222325ULL ^ s.size();
  const char* p = s.data();
  size_t n = s.size();
  while (n >= 8) {
    uint64_t w;
    __builtin_memcpy(&w, p, 8);
    h = (h ^ w) * 0x100000001b3ULL;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  __builtin_memcpy(&w, p, n);
  h = (h ^ w) * 0x100000001b3ULL;
  h ^= h >> 32;
  h *= 0x9E3779B97F4A7C15ULL;
  return h ^ (h >> 29);
}

// String -> int32 map; keys are copied into an arena owned by the map.
class StrIdMap {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{});
  }
  // Inserts or overwrites.
  void set(std::string_view key, int32_t value) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    uint64_t h = hash_bytes(key);
    size_t mask = slots_.size() - 1, i = h & mask;
    while (slots_[i].len != kEmpty) {
      if (slots_[i].hash == h && view(slots_[i]) == key) {
        slots_[i].value = value;
        return;
      }
      i = (i + 1) & mask;
    }
    Slot s;
    s.hash = h;
    s.off = static_cast<uint32_t>(arena_.size());
    s.len = static_cast<uint32_t>(key.size());
    s.value = value;
    arena_.append(key.data(), key.size());
    slots_[i] = s;
    ++size_;
  }
  const int32_t* find(std::string_view key) const {
    if (slots_.empty()) return nullptr;
    uint64_t h = hash_bytes(key);
    size_t mask = slots_.size() - 1, i = h & mask;
    while (slots_[i].len != kEmpty) {
      if (slots_[i].hash == h && view(slots_[i]) == key) return &slots_[i].value;
      i = (i + 1) & mask;
    }
    return nullptr;
  }
  size_t size() const { return size_; }
  template <typename F>
  void for_each(F&& f) const {
    for (const auto& s : slots_)
      if (s.len != kEmpty) f(view(s), s.value);
  }

 private:
  static constexpr uint32_t kEmpty = 0xFFFFFFFFu;
  struct Slot {
    uint64_t hash = 0;
    uint32_t off = 0, len = kEmpty;
    int32_t value = 0;
  };
  std::string_view view(const Slot& s) const { return std::string_view(arena_.data() + s.off, s.len); }
  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.empty() ? 16 : old.size() * 2, Slot{});
    size_t mask = slots_.size() - 1;
    for (const auto& s : old) {
      if (s.len == kEmpty) continue;
      size_t i = s.hash & mask;
      while (slots_[i].len != kEmpty) i = (i + 1) & mask;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  std::string arena_;
  size_t size_ = 0;
};

// (id, id) -> (rank, merged id).
class PairMap {
 public:
  struct Value {
    uint32_t rank;
    int32_t id;
  };
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{});
  }
  // Later insertions of the same pair overwrite earlier ones (as a HashMap insert does).
  void set(int32_t a, int32_t b, Value v) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    uint64_t k = key(a, b);
    size_t mask = slots_.size() - 1, i = mix(k) & mask;
    while (slots_[i].key != kEmpty) {
      if (slots_[i].key == k) {
        slots_[i].v = v;
        return;
      }
      i = (i + 1) & mask;
    }
    slots_[i] = Slot{k, v};
    ++size_;
  }
  const Value* find(int32_t a, int32_t b) const {
    if (slots_.empty()) return nullptr;
    uint64_t k = key(a, b);
    size_t mask = slots_.size() - 1, i = mix(k) & mask;
    while (slots_[i].key != kEmpty) {
      if (slots_[i].key == k) return &slots_[i].v;
      i = (i + 1) & mask;
    }
    return nullptr;
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~0ULL;
  struct Slot {
    uint64_t key = kEmpty;
    Value v{};
  };
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  static uint64_t mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
  }
  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.empty() ? 16 : old.size() * 2, Slot{});
    size_t mask = slots_.size() - 1;
    for (const auto& s : old) {
      if (s.key == kEmpty) continue;
      size_t i = mix(s.key) & mask;
      while (slots_[i].key != kEmpty) i = (i + 1) & mask;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  size_t size_ = 0;
};

}  // namespace kvprime::tok
