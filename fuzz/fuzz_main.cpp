// The libFuzzer entry point of one target: built once per target with KVPRIME_FUZZ_TARGET set to
// the function's name (fuzz/CMakeLists.txt).
#include <cstddef>
#include <cstdint>

#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvprime::fuzz::KVPRIME_FUZZ_TARGET(data, size);
  return 0;
}
