#include "kvprime/core/dtype.h"

#include "kvprime/core/compat.h"
#include "kvprime/core/error.h"

namespace kvprime {

at::ScalarType parse_dtype(const std::string& name, const std::string& what) {
  if (name == "float32" || name == "fp32" || name == "f32" || name == "float") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "fp16" || name == "f16" || name == "half") return at::kHalf;
  KVP_FAIL(what, ": unknown dtype '", name, "'; use one of float32, bfloat16, float16");
}

std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    case at::kDouble: return "float64";
    case at::kLong: return "int64";
    case at::kInt: return "int32";
    case at::kBool: return "bool";
    default: return c10::toString(t);
  }
}

at::Device parse_device(const std::string& name, const std::string& what) {
  if (name == "cpu") return at::Device(at::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    KVP_CHECK(compat::cuda_available(), what, ": '", name,
              "' was asked for, but this build of LibTorch has no usable CUDA device; use 'cpu' "
              "or build kvprime against a CUDA-enabled PyTorch");
    int index = 0;
    if (name.size() > 4) {
      KVP_CHECK(name[4] == ':' && name.size() > 5 &&
                    name.find_first_not_of("0123456789", 5) == std::string::npos,
                what, ": malformed device '", name, "'; write cuda or cuda:N");
      index = std::stoi(name.substr(5));
    }
    KVP_CHECK(index < static_cast<int>(compat::cuda_device_count()), what, ": '", name,
              "' does not exist; this machine has ", compat::cuda_device_count(), " GPU(s)");
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  KVP_FAIL(what, ": unknown device '", name, "'; use cpu, cuda or cuda:N");
}

}  // namespace kvprime
