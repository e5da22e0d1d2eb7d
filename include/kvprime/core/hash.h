// Small non-cryptographic hashing for identities and fingerprints (not for security).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kvprime {

// FNV-1a, 64 bit. `seed` chains calls: fnv1a64(b, fnv1a64(a)) hashes a then b.
uint64_t fnv1a64(std::string_view bytes, uint64_t seed = 0xcbf29ce484222325ULL);
std::string hex64(uint64_t v);  // 16 lowercase hex digits

}  // namespace kvprime
