// (placeholder written by the integrating engineer so model.cpp compiles; the fused-kernels helper
// owns this file and replaces it)
#pragma once

#include <ATen/ATen.h>

#include <utility>

#include "kvprime/model/config.h"

namespace kvprime::fused {
bool available(const at::Tensor& x);
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps, bool one_plus);
std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x, const at::Tensor& a, const at::Tensor& w,
                                               double eps, bool one_plus);
at::Tensor gated_act(const at::Tensor& gu, Activation act);
at::Tensor rope(const at::Tensor& x_bthd, const at::Tensor& cos, const at::Tensor& sin, int64_t rotary_dim);
}  // namespace kvprime::fused
