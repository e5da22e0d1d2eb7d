#include "kvprime/core/compat.h"

#include <ATen/detail/CUDAHooksInterface.h>

namespace kvprime::compat {

int cuda_device_count() { return at::hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0; }

bool cuda_available() { return cuda_device_count() > 0; }

}  // namespace kvprime::compat
