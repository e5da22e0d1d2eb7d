#include "fused_ops.h"

#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "kvprime/core/error.h"

#if KVPRIME_WITH_CUDA_KERNELS
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "cuda/fused_kernels.cuh"
#endif

namespace kvprime::fused {

#if KVPRIME_WITH_CUDA_KERNELS

namespace {

namespace ck = kvprime::cuda_kernels;

bool disabled_by_env() {
  static const bool disabled = [] {
    const char* v = std::getenv("KVPRIME_NO_FUSED");
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
  }();
  return disabled;
}

bool supported_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

void check_input(const char* fn, const char* name, const at::Tensor& t) {
  KVP_CHECK(t.defined(), "fused::", fn, ": ", name, " is an undefined tensor");
  KVP_CHECK(t.is_cuda(), "fused::", fn, ": ", name, " must be a CUDA tensor, got one on ",
            t.device().str(), "; use the eager op for other devices (see fused::available)");
  KVP_CHECK(supported_dtype(t.scalar_type()), "fused::", fn, ": ", name,
            " must be float32, float16 or bfloat16, got ", t.scalar_type());
}

// `t` must be a supported CUDA tensor of ref's dtype on ref's device.
void check_like(const char* fn, const char* name, const at::Tensor& t, const char* ref_name,
                const at::Tensor& ref) {
  check_input(fn, name, t);
  KVP_CHECK(t.scalar_type() == ref.scalar_type() && t.device() == ref.device(), "fused::", fn,
            ": ", name, " is ", t.scalar_type(), " on ", t.device().str(), " but ", ref_name,
            " is ", ref.scalar_type(), " on ", ref.device().str(), "; they must match");
}

// The rows of t [..., d]: n = prod(leading dims) rows of d elements, read in place when the last
// dim is contiguous and the leading dims collapse into at most two strided levels, else from a
// contiguous copy (kept alive in `t`).
struct Rows {
  at::Tensor t;
  int64_t n = 0, d = 0;
  ck::RowLayout layout;
};

Rows rows_of(const at::Tensor& x) {
  Rows r;
  r.t = x;
  r.d = x.size(-1);
  r.n = 1;
  for (int64_t i = 0; i + 1 < x.dim(); ++i) r.n *= x.size(i);
  if (r.n == 0) return r;
  if (r.d > 1 && x.stride(-1) != 1) r.t = x.contiguous();
  // Leading dims as (size, stride), size-1 dims dropped; merged from the innermost outwards.
  std::vector<std::pair<int64_t, int64_t>> levels;  // innermost first
  for (int64_t i = r.t.dim() - 2; i >= 0; --i) {
    const int64_t size = r.t.size(i), stride = r.t.stride(i);
    if (size == 1) continue;
    if (!levels.empty() && stride == levels.back().second * levels.back().first)
      levels.back().first *= size;
    else
      levels.emplace_back(size, stride);
  }
  if (levels.size() > 2) {
    r.t = r.t.contiguous();
    r.layout = ck::contiguous_rows(r.n, r.d);
  } else if (levels.size() == 2) {
    r.layout = ck::RowLayout{levels[0].first, levels[0].second, levels[1].second};
  } else if (levels.size() == 1) {
    r.layout = ck::RowLayout{levels[0].first, levels[0].second, 0};
  } else {
    r.layout = ck::RowLayout{1, 0, 0};  // a single row
  }
  return r;
}

// What ATen's CUDA mean multiplies the float sum by (mean_kernel_impl:
// static_cast<float>(iter.num_output_elements()) / iter.numel(), the int64 converted to float).
float mean_factor(int64_t n, int64_t d) {
  return static_cast<float>(n) / static_cast<float>(n * d);
}

template <typename T>
struct Tag {
  using type = T;
};

// f(Tag<T>{}) for the CUDA element type of st.
template <typename F>
cudaError_t dispatch(at::ScalarType st, F&& f) {
  switch (st) {
    case at::kFloat: return f(Tag<float>{});
    case at::kHalf: return f(Tag<__half>{});
    case at::kBFloat16: return f(Tag<__nv_bfloat16>{});
    default: break;
  }
  KVP_ASSERT(false, "fused: unsupported dtype ", st, " passed the checks");
  return cudaErrorInvalidValue;
}

template <typename T>
const T* cptr(const at::Tensor& t) {
  return reinterpret_cast<const T*>(t.data_ptr());
}
template <typename T>
T* mptr(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

cudaStream_t stream_of(const at::Tensor& t) {
  return at::cuda::getCurrentCUDAStream(t.device().index()).stream();
}

void check_launch(const char* fn, cudaError_t err) {
  KVP_CHECK(err == cudaSuccess, "fused::", fn, ": CUDA kernel launch failed: ",
            cudaGetErrorString(err));
}

void check_norm_weight(const char* fn, const at::Tensor& x, const at::Tensor& w) {
  KVP_CHECK(x.dim() >= 1, "fused::", fn, ": x must have at least one dimension");
  check_like(fn, "w", w, "x", x);
  KVP_CHECK(w.dim() == 1 && w.size(0) == x.size(-1), "fused::", fn, ": w must be [",
            x.size(-1), "] (x's last dim), got ", w.sizes());
}

}  // namespace

bool available(const at::Tensor& x) {
  return !disabled_by_env() && x.defined() && x.is_cuda() && supported_dtype(x.scalar_type());
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps, bool one_plus) {
  check_input("rms_norm", "x", x);
  check_norm_weight("rms_norm", x, w);
  const Rows r = rows_of(x);
  at::Tensor out = at::empty(x.sizes(), x.options());
  if (r.n == 0 || r.d == 0) return out;
  const at::Tensor wc = w.contiguous();
  const c10::cuda::CUDAGuard guard(x.device());
  const float eps_f = static_cast<float>(eps), factor = mean_factor(r.n, r.d);
  const cudaStream_t stream = stream_of(x);
  check_launch("rms_norm", dispatch(x.scalar_type(), [&](auto tag) {
                 using T = typename decltype(tag)::type;
                 return ck::rms_norm<T>(cptr<T>(r.t), r.layout, cptr<T>(wc), mptr<T>(out), r.n,
                                        r.d, eps_f, factor, one_plus, stream);
               }));
  return out;
}

std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& x, const at::Tensor& a,
                                               const at::Tensor& w, double eps, bool one_plus,
                                               bool in_place) {
  check_input("add_rms_norm", "x", x);
  check_like("add_rms_norm", "a", a, "x", x);
  KVP_CHECK(a.sizes() == x.sizes(), "fused::add_rms_norm: a must have x's shape ", x.sizes(),
            ", got ", a.sizes(), " (no broadcasting)");
  check_norm_weight("add_rms_norm", x, w);
  KVP_CHECK(!in_place || x.is_contiguous(), "fused::add_rms_norm: in_place needs a contiguous x, "
            "got strides ", x.strides(), "; pass in_place = false");
  const Rows rx = rows_of(x), ra = rows_of(a);
  at::Tensor y = in_place ? x : at::empty(x.sizes(), x.options());
  at::Tensor h = at::empty(x.sizes(), x.options());
  if (rx.n == 0 || rx.d == 0) return {y, h};
  // x contiguous: rows_of(x) reads it in place, so its layout is also y's.
  const ck::RowLayout y_rows = in_place ? rx.layout : ck::contiguous_rows(rx.n, rx.d);
  const at::Tensor wc = w.contiguous();
  const c10::cuda::CUDAGuard guard(x.device());
  const float eps_f = static_cast<float>(eps), factor = mean_factor(rx.n, rx.d);
  const cudaStream_t stream = stream_of(x);
  check_launch("add_rms_norm", dispatch(x.scalar_type(), [&](auto tag) {
                 using T = typename decltype(tag)::type;
                 return ck::add_rms_norm<T>(cptr<T>(rx.t), rx.layout, cptr<T>(ra.t), ra.layout,
                                            cptr<T>(wc), mptr<T>(y), y_rows, mptr<T>(h), rx.n,
                                            rx.d, eps_f, factor, one_plus, stream);
               }));
  return {y, h};
}

at::Tensor gated_act(const at::Tensor& gu, Activation act) {
  check_input("gated_act", "gu", gu);
  KVP_CHECK(gu.dim() >= 1 && gu.size(-1) % 2 == 0, "fused::gated_act: gu must be [..., 2F] "
            "(gate | up), got ", gu.sizes());
  const Rows r = rows_of(gu);
  const int64_t f = r.d / 2;
  std::vector<int64_t> sizes = gu.sizes().vec();
  sizes.back() = f;
  at::Tensor out = at::empty(sizes, gu.options());
  if (r.n == 0 || f == 0) return out;
  ck::GatedAct a = ck::GatedAct::SiLU;
  switch (act) {
    case Activation::SiLU: a = ck::GatedAct::SiLU; break;
    case Activation::GeluTanh: a = ck::GatedAct::GeluTanh; break;
    case Activation::GeluExact: a = ck::GatedAct::GeluExact; break;
  }
  const c10::cuda::CUDAGuard guard(gu.device());
  const cudaStream_t stream = stream_of(gu);
  check_launch("gated_act", dispatch(gu.scalar_type(), [&](auto tag) {
                 using T = typename decltype(tag)::type;
                 return ck::gated_act<T>(cptr<T>(r.t), r.layout, mptr<T>(out), r.n, f, a, stream);
               }));
  return out;
}

at::Tensor rope(const at::Tensor& x_bthd, const at::Tensor& cos, const at::Tensor& sin,
                int64_t rotary_dim) {
  check_input("rope", "x", x_bthd);
  KVP_CHECK(x_bthd.dim() == 4, "fused::rope: x must be [B, T, H, D], got ", x_bthd.sizes());
  check_like("rope", "cos", cos, "x", x_bthd);
  check_like("rope", "sin", sin, "x", x_bthd);
  const int64_t B = x_bthd.size(0), T = x_bthd.size(1), H = x_bthd.size(2), D = x_bthd.size(3);
  KVP_CHECK(rotary_dim > 0 && rotary_dim % 2 == 0 && rotary_dim <= D, "fused::rope: rotary_dim ",
            rotary_dim, " must be even and in (0, head_dim = ", D, "]");
  KVP_CHECK(cos.dim() == 3 && (cos.size(0) == B || cos.size(0) == 1) && cos.size(1) == T &&
                cos.size(2) == rotary_dim,
            "fused::rope: cos must be [", B, " or 1, ", T, ", ", rotary_dim, "] (batch, seq, "
            "rotary_dim), got ", cos.sizes());
  KVP_CHECK(sin.sizes() == cos.sizes(), "fused::rope: sin must have cos's shape ", cos.sizes(),
            ", got ", sin.sizes());
  const at::Tensor x = x_bthd.stride(3) == 1 ? x_bthd : x_bthd.contiguous();
  // Contiguous cos and sin share their strides (those of size-1 dims are not used: zeroed).
  const at::Tensor c = cos.contiguous(), s = sin.contiguous();
  at::Tensor out = at::empty({B, H, T, D}, x.options());
  if (out.numel() == 0) return out;
  auto stride_or_0 = [](const at::Tensor& t, int64_t dim) {
    return t.size(dim) == 1 ? int64_t{0} : t.stride(dim);
  };
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = stream_of(x);
  check_launch("rope", dispatch(x.scalar_type(), [&](auto tag) {
                 using E = typename decltype(tag)::type;
                 return ck::rope<E>(cptr<E>(x), B, T, H, D, stride_or_0(x, 0), stride_or_0(x, 1),
                                    stride_or_0(x, 2), cptr<E>(c), cptr<E>(s), stride_or_0(c, 0),
                                    stride_or_0(c, 1), rotary_dim, mptr<E>(out), stream);
               }));
  return out;
}

void nf4_dequantize_into(const Nf4Tensor& q, at::Tensor& out, int64_t first) {
  check_input("nf4_dequantize", "out", out);
  const bool nested = q.double_quantized();
  auto on_device = [&](const at::Tensor& t, at::ScalarType dt) {
    return t.defined() && t.device() == out.device() && t.scalar_type() == dt && t.is_contiguous();
  };
  KVP_CHECK(on_device(q.codes, at::kByte) && out.is_contiguous() && first >= 0 && first % 2 == 0 &&
                first + out.numel() <= q.numel() &&
                (nested ? on_device(q.absmax_q, at::kByte) && on_device(q.absmax_scale, at::kFloat) &&
                              on_device(q.absmax_code, at::kFloat) && q.absmax_code.numel() == 256
                        : on_device(q.absmax, at::kFloat)),
            "fused::nf4_dequantize: codes (uint8), block scales (float32) and out (", out.numel(),
            " elements from element ", first, ", contiguous) must be on one CUDA device and lie within a "
            "tensor of ", q.numel(), " elements");
  ck::Nf4Source src;
  src.codes = q.codes.data_ptr<uint8_t>();
  if (nested) {
    src.absmax_q = q.absmax_q.data_ptr<uint8_t>();
    src.absmax_scale = q.absmax_scale.data_ptr<float>();
    src.absmax_code = q.absmax_code.data_ptr<float>();
    src.absmax_offset = q.absmax_offset;
  } else {
    src.absmax = q.absmax.data_ptr<float>();
  }
  src.block = q.block;
  const c10::cuda::CUDAGuard guard(out.device());
  const cudaStream_t stream = stream_of(out);
  check_launch("nf4_dequantize", dispatch(out.scalar_type(), [&](auto tag) {
                 using T = typename decltype(tag)::type;
                 return ck::nf4_dequantize<T>(src, first, out.numel(), mptr<T>(out), stream);
               }));
}

#else  // no CUDA kernels in this build

namespace {
[[noreturn]] void no_kernels(const char* fn) {
  KVP_FAIL("fused::", fn, ": this build of kvprime has no CUDA kernels (it was built against a "
           "LibTorch without CUDA); use the eager ops (check fused::available first)");
}
}  // namespace

bool available(const at::Tensor&) { return false; }

at::Tensor rms_norm(const at::Tensor&, const at::Tensor&, double, bool) { no_kernels("rms_norm"); }

std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor&, const at::Tensor&,
                                               const at::Tensor&, double, bool, bool) {
  no_kernels("add_rms_norm");
}

at::Tensor gated_act(const at::Tensor&, Activation) { no_kernels("gated_act"); }

at::Tensor rope(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t) {
  no_kernels("rope");
}

void nf4_dequantize_into(const Nf4Tensor&, at::Tensor&, int64_t) { no_kernels("nf4_dequantize"); }

#endif  // KVPRIME_WITH_CUDA_KERNELS

}  // namespace kvprime::fused
