// Names of dtypes and devices as users write them ("float32", "bf16", "cuda:1").
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace kvprime {

// Accepts float32/fp32/f32, bfloat16/bf16, float16/fp16/half; throws naming `what` otherwise.
at::ScalarType parse_dtype(const std::string& name, const std::string& what = "dtype");
std::string dtype_name(at::ScalarType t);  // "float32", "bfloat16", "float16", ...

// Accepts "cpu", "cuda", "cuda:N"; throws with a fix when CUDA is asked for but not available.
at::Device parse_device(const std::string& name, const std::string& what = "device");

}  // namespace kvprime
