// (placeholder written by the integrating engineer so the CPU build links; the fused-kernels
// helper owns this file and replaces it)
#include "fused_ops.h"

#include "kvprime/core/error.h"

namespace kvprime::fused {
bool available(const at::Tensor&) { return false; }
at::Tensor rms_norm(const at::Tensor&, const at::Tensor&, double, bool) { KVP_FAIL("no CUDA kernels in this build"); }
std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor&, const at::Tensor&, const at::Tensor&, double, bool) {
  KVP_FAIL("no CUDA kernels in this build");
}
at::Tensor gated_act(const at::Tensor&, Activation) { KVP_FAIL("no CUDA kernels in this build"); }
at::Tensor rope(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t) { KVP_FAIL("no CUDA kernels in this build"); }
}  // namespace kvprime::fused
