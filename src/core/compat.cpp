#include "kvprime/core/compat.h"

#include <ATen/detail/CUDAHooksInterface.h>

#if KVPRIME_WITH_CUDA_KERNELS
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace kvprime::compat {

int cuda_device_count() { return at::hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0; }

bool cuda_available() { return cuda_device_count() > 0; }

at::Tensor to_device(const at::Tensor& t, at::Device device) {
  if (!t.defined() || t.device() == device) return t;
  if (device.is_cuda() && t.device().is_cpu())
    return t.contiguous().pin_memory().to(device, /*non_blocking=*/true);
  return t.to(device);
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
