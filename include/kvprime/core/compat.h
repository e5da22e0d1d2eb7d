// The one place where LibTorch versions differ. Debian's libtorch 1.13 (CPU) builds and tests
// on the CI machines; PyTorch 2.x (CUDA) builds on the GPU machine.
#pragma once

#include <ATen/ATen.h>
#include <torch/version.h>

// at::scaled_dot_product_attention is public (with the `scale` argument) from PyTorch 2.1.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define KVPRIME_HAS_SDPA 1
#else
#define KVPRIME_HAS_SDPA 0
#endif

namespace kvprime::compat {

// True when this LibTorch can run CUDA tensors (built with CUDA and a device is present).
bool cuda_available();
int cuda_device_count();

}  // namespace kvprime::compat
