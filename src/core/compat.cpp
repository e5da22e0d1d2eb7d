#include "kvprime/core/compat.h"

#include <map>
#include <mutex>

#include <ATen/detail/CUDAHooksInterface.h>

#include <cstdlib>
#include <string>

#if KVPRIME_WITH_CUDA_KERNELS
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace kvprime::compat {

int cuda_device_count() { return at::hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0; }

bool cuda_available() { return cuda_device_count() > 0; }

bool cpu_matmul_supported(at::ScalarType dtype) {
  static std::mutex mu;
  static std::map<at::ScalarType, bool> known;
  std::lock_guard<std::mutex> lock(mu);
  auto it = known.find(dtype);
  if (it != known.end()) return it->second;
  bool ok = true;
  try {
    const at::Tensor a = at::ones({1, 1}, at::TensorOptions().dtype(dtype));
    (void)at::matmul(a, a);
  } catch (const c10::Error&) {
    ok = false;
  }
  return known[dtype] = ok;
}

at::Tensor to_device(const at::Tensor& t, at::Device device) {
  if (!t.defined() || t.device() == device) return t;
  if (device.is_cuda() && t.device().is_cpu())
    return t.contiguous().pin_memory().to(device, /*non_blocking=*/true);
  return t.to(device);
}

void avoid_per_shape_attention_compilation() {
#if KVPRIME_HAS_SDPA_CUDNN
  const char* keep = std::getenv("KVPRIME_CUDNN_ATTENTION");
  if (keep == nullptr || std::string(keep) != "1") at::globalContext().setSDPUseCuDNN(false);
#endif
}

int64_t cuda_peak_allocated_bytes(at::Device device) {
#if KVPRIME_WITH_CUDA_KERNELS
  if (device.is_cuda()) {
    const auto index = device.has_index() ? device.index() : static_cast<c10::DeviceIndex>(0);
    return c10::cuda::CUDACachingAllocator::getDeviceStats(index).allocated_bytes[0].peak;
  }
#endif
  return -1;
}

void cuda_reset_peak(at::Device device) {
#if KVPRIME_WITH_CUDA_KERNELS
  if (device.is_cuda())
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index() : 0);
#endif
}

}  // namespace kvprime::compat
