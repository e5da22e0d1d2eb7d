// The one place where LibTorch versions differ. Debian's libtorch 1.13 (CPU) builds and tests
// on the CI machines; PyTorch 2.x (CUDA) builds on the GPU machine.
#pragma once

#include <ATen/ATen.h>
#include <torch/version.h>

#include <cstdint>

// at::scaled_dot_product_attention is public (with the `scale` argument) from PyTorch 2.1.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define KVPRIME_HAS_SDPA 1
#else
#define KVPRIME_HAS_SDPA 0
#endif

// ... and takes `enable_gqa` (grouped-query heads without expanding K/V) from PyTorch 2.5.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
#define KVPRIME_HAS_SDPA_GQA 1
#else
#define KVPRIME_HAS_SDPA_GQA 0
#endif

// The cuDNN backend of scaled_dot_product_attention (and the switch to turn it off) exists from
// PyTorch 2.4.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define KVPRIME_HAS_SDPA_CUDNN 1
#else
#define KVPRIME_HAS_SDPA_CUDNN 0
#endif

namespace kvprime::compat {

// True when this LibTorch can run CUDA tensors (built with CUDA and a device is present).
bool cuda_available();
int cuda_device_count();

// Whether this LibTorch multiplies `dtype` matrices on the CPU (Debian's 1.13 has no float16 CPU
// matmul: "addmm_impl_cpu_ not implemented for 'Half'"). Probed once per dtype with a 1x1 product.
bool cpu_matmul_supported(at::ScalarType dtype);

// `t` on `device`. A host tensor bound for a CUDA device goes through pinned memory with a
// non-blocking copy: a copy from pageable memory makes the host wait for the stream to drain,
// which would serialise every forward's inputs with the previous forward's kernels.
at::Tensor to_device(const at::Tensor& t, at::Device device);

// Keeps scaled_dot_product_attention off its cuDNN backend (flash / memory-efficient kernels
// instead), process-wide, unless KVPRIME_CUDNN_ATTENTION=1. cuDNN builds an execution graph for
// every new attention shape: measured on an H200 (PyTorch 2.11), a batch-1 sample of new lengths
// took 250 ms to 1.9 s against 50 ms once its shapes had been seen, and every chunk of an
// experiment has new lengths. Called by Model::load for CUDA models.
void avoid_per_shape_attention_compilation();

// Peak bytes held by LibTorch's CUDA caching allocator on `device` since the last reset
// (-1 when this build cannot tell: no CUDA kernels build, or not a CUDA device).
int64_t cuda_peak_allocated_bytes(at::Device device);
void cuda_reset_peak(at::Device device);

}  // namespace kvprime::compat
