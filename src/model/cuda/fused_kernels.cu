// Fused elementwise kernels of the forward pass; see fused_kernels.cuh for the contracts.
//
// Compile with nvcc's default floating-point flags (no --use_fast_math, no -ftz / -prec-div=false):
// the activations must compile to the same code as ATen's CUDA kernels, which are built that way.
#include "fused_kernels.cuh"

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

namespace kvprime::cuda_kernels {
namespace {

// ---- element conversions: exactly those c10::Half / c10::BFloat16 use on the device -----------

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half(v);  // round to nearest even, as c10::Half(float)
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16(v);  // round to nearest even, as c10::BFloat16(float) on sm_80+
}

// What an eager op does when it writes its float result to a T tensor that the next op reads.
template <typename T>
__device__ __forceinline__ float round_to(float v) {
  return to_float(from_float<T>(v));
}

// ---- vector access ------------------------------------------------------------------------------

template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

template <typename T, int V>
__device__ __forceinline__ Vec<T, V> load(const T* p) {
  return *reinterpret_cast<const Vec<T, V>*>(p);
}

template <typename T, int V>
__device__ __forceinline__ void store(T* p, const Vec<T, V>& v) {
  *reinterpret_cast<Vec<T, V>*>(p) = v;
}

__device__ __forceinline__ int64_t row_start(int64_t r, const RowLayout& l) {
  return (r / l.inner) * l.outer_stride + (r % l.inner) * l.inner_stride;
}

// The widest vector (in elements, at most 16 bytes) that divides the row length and every stride
// and to which every pointer is aligned.
template <typename T>
int vec_width(int64_t len, std::initializer_list<int64_t> strides,
              std::initializer_list<const void*> ptrs) {
  for (int v = static_cast<int>(16 / sizeof(T)); v > 1; v /= 2) {
    bool ok = len % v == 0;
    for (int64_t s : strides) ok = ok && s % v == 0;
    for (const void* p : ptrs)
      ok = ok && reinterpret_cast<uintptr_t>(p) % (static_cast<uintptr_t>(v) * sizeof(T)) == 0;
    if (ok) return v;
  }
  return 1;
}

// Calls f(std::integral_constant<int, V>{}) for the runtime width v (8 only for 2-byte types).
template <typename T, typename F>
cudaError_t with_width(int v, F&& f) {
  if constexpr (sizeof(T) <= 2) {
    if (v == 8) return f(std::integral_constant<int, 8>{});
  }
  if (v == 4) return f(std::integral_constant<int, 4>{});
  if (v == 2) return f(std::integral_constant<int, 2>{});
  return f(std::integral_constant<int, 1>{});
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

constexpr int64_t kMaxGridX = 0x7fffffff;
constexpr int64_t kMaxGridY = 65535;

// RowLayout with the strides that cannot matter zeroed, so they do not block vector access.
RowLayout normalized(RowLayout l, int64_t n_rows) {
  if (l.inner < 1) l.inner = 1;
  if (l.inner == 1) l.inner_stride = 0;
  if (l.inner >= n_rows) l.outer_stride = 0;
  return l;
}

// ---- RMSNorm / residual add + RMSNorm -----------------------------------------------------------

template <typename T>
struct RmsParams {
  const T* x;
  RowLayout x_rows;
  const T* a;  // kAdd only
  RowLayout a_rows;
  T* y;  // kAdd only: x + a
  RowLayout y_rows;
  const T* w;
  T* out;  // [n_rows, d] contiguous
  int64_t n_rows, d;
  float eps, mean_factor;
};

// Vectors of a row kept in registers between the two passes (the rest is read again).
constexpr int kCached = 4;

// Sum of v over the tx threads of a row (threadIdx.x = 0..tx-1). tx is a power of two; tx <= 32:
// the row's lanes are an aligned group within one warp and every lane of the block calls this;
// tx > 32: one row per block (blockDim.y == 1). Every lane gets the same bits (xor butterfly:
// each partial sum is a + b on both sides; the warp sums are added in one fixed order).
__device__ __forceinline__ float row_sum(float v, int tx, float* warp_sums) {
  if (tx <= 32) {
    for (int o = tx >> 1; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
  }
  for (int o = 16; o > 0; o >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = threadIdx.x;
  if ((lane & 31) == 0) warp_sums[lane >> 5] = v;
  __syncthreads();
  float total = warp_sums[0];
  for (int i = 1; i < (tx >> 5); ++i) total = __fadd_rn(total, warp_sums[i]);
  __syncthreads();  // warp_sums is rewritten for the next row
  return total;
}

template <typename T, int V>
__device__ __forceinline__ float add_squares(float ss, const Vec<T, V>& v) {
#pragma unroll
  for (int e = 0; e < V; ++e) {
    const float f = to_float(v.v[e]);
    ss = __fadd_rn(ss, __fmul_rn(f, f));  // xf.pow(2) is a float tensor: the square rounds first
  }
  return ss;
}

template <typename T, int V>
__device__ __forceinline__ Vec<T, V> add_round(const Vec<T, V>& x, const Vec<T, V>& a) {
  Vec<T, V> y;
#pragma unroll
  for (int e = 0; e < V; ++e) y.v[e] = from_float<T>(__fadd_rn(to_float(x.v[e]), to_float(a.v[e])));
  return y;
}

template <typename T, int V, bool kOnePlus>
__device__ __forceinline__ Vec<T, V> normalize(const Vec<T, V>& x, const Vec<T, V>& w, float r) {
  Vec<T, V> o;
#pragma unroll
  for (int e = 0; e < V; ++e) {
    const float xf = to_float(x.v[e]), wf = to_float(w.v[e]);
    if constexpr (kOnePlus) {
      // (xf * r) * (w.float() + 1.0), then .to(dtype)
      o.v[e] = from_float<T>(__fmul_rn(__fmul_rn(xf, r), __fadd_rn(wf, 1.0f)));
    } else {
      // w * (xf * r).to(dtype), the product rounded to dtype
      o.v[e] = from_float<T>(__fmul_rn(wf, round_to<T>(__fmul_rn(xf, r))));
    }
  }
  return o;
}

template <typename T, int V, bool kAdd, bool kOnePlus>
__global__ void __launch_bounds__(1024) rms_norm_kernel(RmsParams<T> p) {
  __shared__ float warp_sums[32];
  const int tx = static_cast<int>(blockDim.x), ty = static_cast<int>(blockDim.y);
  const int lane = static_cast<int>(threadIdx.x);
  const int64_t nvec = p.d / V;
  // The loop bound is the same for the whole block (row_sum needs every thread).
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * ty; base < p.n_rows;
       base += static_cast<int64_t>(gridDim.x) * ty) {
    const int64_t row = base + threadIdx.y;
    const bool active = row < p.n_rows;
    Vec<T, V> cache[kCached];
    float ss = 0.0f;
    const T* src = nullptr;  // what pass 2 re-reads beyond the cache: x, or y = x + a
    if (active) {
      const T* xr = p.x + row_start(row, p.x_rows);
      const T* ar = nullptr;
      T* yr = nullptr;
      if constexpr (kAdd) {
        ar = p.a + row_start(row, p.a_rows);
        yr = p.y + row_start(row, p.y_rows);
        src = yr;
      } else {
        src = xr;
      }
#pragma unroll
      for (int j = 0; j < kCached; ++j) {
        const int64_t i = lane + static_cast<int64_t>(j) * tx;
        if (i < nvec) {
          Vec<T, V> v = load<T, V>(xr + i * V);
          if constexpr (kAdd) {
            v = add_round<T, V>(v, load<T, V>(ar + i * V));
            store<T, V>(yr + i * V, v);  // in place (yr == xr) is fine: same thread, same element
          }
          cache[j] = v;
          ss = add_squares<T, V>(ss, v);
        }
      }
      for (int64_t i = lane + static_cast<int64_t>(kCached) * tx; i < nvec; i += tx) {
        Vec<T, V> v = load<T, V>(xr + i * V);
        if constexpr (kAdd) {
          v = add_round<T, V>(v, load<T, V>(ar + i * V));
          store<T, V>(yr + i * V, v);
        }
        ss = add_squares<T, V>(ss, v);
      }
    }
    const float total = row_sum(ss, tx, warp_sums);
    if (active) {
      // mean = sum * factor (ATen's CUDA MeanOps), + eps (a float scalar add), rsqrt (::rsqrtf)
      const float r = rsqrtf(__fadd_rn(__fmul_rn(total, p.mean_factor), p.eps));
      T* hr = p.out + row * p.d;
#pragma unroll
      for (int j = 0; j < kCached; ++j) {
        const int64_t i = lane + static_cast<int64_t>(j) * tx;
        if (i < nvec)
          store<T, V>(hr + i * V, normalize<T, V, kOnePlus>(cache[j], load<T, V>(p.w + i * V), r));
      }
      for (int64_t i = lane + static_cast<int64_t>(kCached) * tx; i < nvec; i += tx)
        store<T, V>(hr + i * V,
                    normalize<T, V, kOnePlus>(load<T, V>(src + i * V), load<T, V>(p.w + i * V), r));
    }
  }
}

template <typename T, bool kAdd>
cudaError_t launch_rms(RmsParams<T> p, bool one_plus, cudaStream_t stream) {
  if (p.n_rows <= 0 || p.d <= 0) return cudaSuccess;
  p.x_rows = normalized(p.x_rows, p.n_rows);
  p.a_rows = normalized(p.a_rows, p.n_rows);
  p.y_rows = normalized(p.y_rows, p.n_rows);
  const int v =
      kAdd ? vec_width<T>(p.d,
                          {p.x_rows.inner_stride, p.x_rows.outer_stride, p.a_rows.inner_stride,
                           p.a_rows.outer_stride, p.y_rows.inner_stride, p.y_rows.outer_stride},
                          {p.x, p.a, p.y, p.w, p.out})
           : vec_width<T>(p.d, {p.x_rows.inner_stride, p.x_rows.outer_stride}, {p.x, p.w, p.out});
  return with_width<T>(v, [&](auto width) -> cudaError_t {
    constexpr int V = decltype(width)::value;
    const int64_t nvec = p.d / V;
    // Threads per row: a power of two giving about kCached vectors per thread, up to 1024.
    const int64_t want = ceil_div(nvec, kCached);
    int tx = 1;
    while (tx < want && tx < 1024) tx <<= 1;
    const int ty = tx <= 32 ? 128 / tx : 1;  // small rows: several rows per 128-thread block
    const dim3 block(tx, ty);
    const dim3 grid(static_cast<unsigned>(std::min(ceil_div(p.n_rows, ty), kMaxGridX)));
    if (one_plus)
      rms_norm_kernel<T, V, kAdd, true><<<grid, block, 0, stream>>>(p);
    else
      rms_norm_kernel<T, V, kAdd, false><<<grid, block, 0, stream>>>(p);
    return cudaGetLastError();
  });
}

// ---- gated activation ---------------------------------------------------------------------------

// The bodies of ATen's CUDA kernels (opmath_t = float), written the same way so that nvcc makes
// the same fma contractions: ActivationSiluKernel.cu, ActivationGeluKernel.cu.
__device__ __forceinline__ float act_silu(float x) {
  const float x_acc = x;
  return x_acc / (1.0f + expf(-x_acc));
}

__device__ __forceinline__ float act_gelu_tanh(float x) {
  // M_SQRT2 * M_2_SQRTPI * opmath_t(0.5) is evaluated in double, then narrowed to float.
  constexpr float kBeta = 1.41421356237309504880 * 1.12837916709551257390 * 0.5f;
  constexpr float kKappa = 0.044715;
  auto x_cube = x * x * x;
  auto inner = kBeta * (x + kKappa * x_cube);
  return 0.5f * x * (1.0f + tanhf(inner));
}

__device__ __forceinline__ float act_gelu_exact(float x) {
  constexpr float kAlpha = 0.70710678118654752440;  // M_SQRT1_2
  return x * 0.5f * (1.0f + erff(x * kAlpha));
}

template <int kAct>
__device__ __forceinline__ float act(float x) {
  if constexpr (kAct == static_cast<int>(GatedAct::SiLU)) return act_silu(x);
  if constexpr (kAct == static_cast<int>(GatedAct::GeluTanh)) return act_gelu_tanh(x);
  return act_gelu_exact(x);
}

template <typename T>
struct GatedParams {
  const T* gu;
  RowLayout rows;
  T* out;  // [n_rows, f] contiguous
  int64_t n_rows, f;
};

template <typename T, int V, int kAct>
__global__ void __launch_bounds__(256) gated_act_kernel(GatedParams<T> p) {
  const int64_t nvec = p.f / V;
  for (int64_t row = blockIdx.y; row < p.n_rows; row += gridDim.y) {
    const T* g = p.gu + row_start(row, p.rows);
    const T* u = g + p.f;
    T* o = p.out + row * p.f;
    for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < nvec;
         k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const Vec<T, V> gv = load<T, V>(g + k * V), uv = load<T, V>(u + k * V);
      Vec<T, V> ov;
#pragma unroll
      for (int e = 0; e < V; ++e) {
        const float a = round_to<T>(act<kAct>(to_float(gv.v[e])));  // act(gate): a T tensor
        ov.v[e] = from_float<T>(__fmul_rn(a, to_float(uv.v[e])));    // * up
      }
      store<T, V>(o + k * V, ov);
    }
  }
}

// ---- RoPE ---------------------------------------------------------------------------------------

template <typename T>
struct RopeParams {
  const T* x;
  int64_t B, S, H, D, x_sb, x_ss, x_sh;
  const T* cos;
  const T* sin;
  int64_t cs_sb, cs_ss, rd;
  T* out;  // [B, H, S, D] contiguous
};

template <typename T, int V>
__global__ void __launch_bounds__(256) rope_kernel(RopeParams<T> p) {
  const int64_t half = p.rd / 2;
  const int64_t n_rot = half / V;                  // vector pairs (i, i + rd/2), i < rd/2
  const int64_t items = n_rot + (p.D - p.rd) / V;  // + pass-through vectors
  const int64_t rows = p.B * p.H * p.S;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * blockDim.y + threadIdx.y; row < rows;
       row += static_cast<int64_t>(gridDim.x) * blockDim.y) {
    const int64_t s = row % p.S, bh = row / p.S;
    const int64_t h = bh % p.H, b = bh / p.H;
    const T* xr = p.x + b * p.x_sb + s * p.x_ss + h * p.x_sh;
    const int64_t cs = b * p.cs_sb + s * p.cs_ss;
    const T* cr = p.cos + cs;
    const T* sr = p.sin + cs;
    T* orow = p.out + row * p.D;
    for (int64_t k = threadIdx.x; k < items; k += blockDim.x) {
      if (k < n_rot) {
        const int64_t i = k * V;
        const Vec<T, V> x1 = load<T, V>(xr + i), x2 = load<T, V>(xr + half + i);
        const Vec<T, V> c1 = load<T, V>(cr + i), c2 = load<T, V>(cr + half + i);
        const Vec<T, V> s1 = load<T, V>(sr + i), s2 = load<T, V>(sr + half + i);
        Vec<T, V> o1, o2;
#pragma unroll
        for (int e = 0; e < V; ++e) {
          const float a = to_float(x1.v[e]), b2 = to_float(x2.v[e]);
          // x * cos, rotate_half(x) * sin (= [-x2, x1]), each a T tensor, then their sum
          o1.v[e] = from_float<T>(__fadd_rn(round_to<T>(__fmul_rn(a, to_float(c1.v[e]))),
                                            round_to<T>(__fmul_rn(-b2, to_float(s1.v[e])))));
          o2.v[e] = from_float<T>(__fadd_rn(round_to<T>(__fmul_rn(b2, to_float(c2.v[e]))),
                                            round_to<T>(__fmul_rn(a, to_float(s2.v[e])))));
        }
        store<T, V>(orow + i, o1);
        store<T, V>(orow + half + i, o2);
      } else {
        const int64_t i = p.rd + (k - n_rot) * V;
        store<T, V>(orow + i, load<T, V>(xr + i));
      }
    }
  }
}

// ---- NF4 dequantization --------------------------------------------------------------------------

// The NF4 code values (model/nf4.h), as the float literals of src/model/nf4.cpp.
__constant__ float kNf4Code[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f};

// Block b's float32 scale: its absmax, or the double-quantized one (map value x scale + offset,
// each rounded, as the eager ops).
__device__ __forceinline__ float nf4_block_scale(const Nf4Source& src, int64_t b) {
  return src.absmax != nullptr
             ? src.absmax[b]
             : __fadd_rn(__fmul_rn(src.absmax_code[src.absmax_q[b]], src.absmax_scale[b / 256]), src.absmax_offset);
}

// The 16 code values copied to shared memory (every thread of the block must call this): a warp's
// threads look up different entries, which constant memory would serve one address at a time.
__device__ __forceinline__ const float* nf4_shared_code() {
  __shared__ float code[16];
  if (threadIdx.x < 16) code[threadIdx.x] = kNf4Code[threadIdx.x];
  __syncthreads();
  return code;
}

// One thread per code byte: elements first + 2k (high nibble) and first + 2k + 1 (low nibble),
// which share a block (first and block are even). For ranges the vector kernel does not cover.
template <typename T>
__global__ void __launch_bounds__(256) nf4_dequantize_kernel(Nf4Source src, int64_t first, int64_t n, T* out) {
  const float* code = nf4_shared_code();
  const int64_t n_bytes = (n + 1) / 2;
  const uint8_t* codes = src.codes + first / 2;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n_bytes;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint8_t c = codes[k];
    const int64_t j = 2 * k;
    const float a = nf4_block_scale(src, (first + j) / src.block);
    out[j] = from_float<T>(__fmul_rn(code[c >> 4], a));
    if (j + 1 < n) out[j + 1] = from_float<T>(__fmul_rn(code[c & 15], a));
  }
}

// One thread per 16 elements (8 code bytes, one 8-byte load; 16 outputs in 16-byte stores), all in
// one block: first and block are multiples of 16, codes + first / 2 is 8-byte aligned and out
// 16-byte aligned. The same roundings as the scalar kernel. Writes 16 * (n / 16) elements.
template <typename T>
__global__ void __launch_bounds__(256) nf4_dequantize16_kernel(Nf4Source src, int64_t first, int64_t n16, T* out) {
  const float* code = nf4_shared_code();
  constexpr int kPerStore = 16 / sizeof(T);
  const uint2* codes = reinterpret_cast<const uint2*>(src.codes + first / 2);
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < n16;
       g += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint2 c = codes[g];
    const float a = nf4_block_scale(src, (first + 16 * g) / src.block);
    union {
      T v[16];
      uint4 u[16 / kPerStore];
    } o;
#pragma unroll
    for (int byte = 0; byte < 8; ++byte) {
      const uint32_t word = byte < 4 ? c.x : c.y;
      const uint32_t cb = (word >> (8 * (byte % 4))) & 0xff;  // little-endian: byte 0 is the lowest
      o.v[2 * byte] = from_float<T>(__fmul_rn(code[cb >> 4], a));
      o.v[2 * byte + 1] = from_float<T>(__fmul_rn(code[cb & 15], a));
    }
    uint4* dst = reinterpret_cast<uint4*>(out + 16 * g);
#pragma unroll
    for (int k = 0; k < 16 / kPerStore; ++k) dst[k] = o.u[k];
  }
}

}  // namespace

// ---- launchers ----------------------------------------------------------------------------------

template <typename T>
cudaError_t rms_norm(const T* x, RowLayout x_rows, const T* w, T* out, int64_t n_rows, int64_t d,
                     float eps, float mean_factor, bool one_plus, cudaStream_t stream) {
  RmsParams<T> p{x, x_rows, nullptr, RowLayout{}, nullptr, RowLayout{}, w, out,
                 n_rows, d, eps, mean_factor};
  return launch_rms<T, false>(p, one_plus, stream);
}

template <typename T>
cudaError_t add_rms_norm(const T* x, RowLayout x_rows, const T* a, RowLayout a_rows, const T* w,
                         T* y_out, RowLayout y_rows, T* h, int64_t n_rows, int64_t d, float eps,
                         float mean_factor, bool one_plus, cudaStream_t stream) {
  RmsParams<T> p{x, x_rows, a, a_rows, y_out, y_rows, w, h, n_rows, d, eps, mean_factor};
  return launch_rms<T, true>(p, one_plus, stream);
}

template <typename T>
cudaError_t gated_act(const T* gu, RowLayout gu_rows, T* out, int64_t n_rows, int64_t f,
                      GatedAct act, cudaStream_t stream) {
  if (n_rows <= 0 || f <= 0) return cudaSuccess;
  GatedParams<T> p{gu, normalized(gu_rows, n_rows), out, n_rows, f};
  // The up half starts f elements after the gate: covered by f % V == 0 and gu's alignment.
  const int v = vec_width<T>(f, {p.rows.inner_stride, p.rows.outer_stride}, {gu, out});
  return with_width<T>(v, [&](auto width) -> cudaError_t {
    constexpr int V = decltype(width)::value;
    const int64_t nvec = f / V;
    constexpr int kThreads = 256;
    const dim3 block(kThreads);
    const dim3 grid(static_cast<unsigned>(std::min(ceil_div(nvec, kThreads), kMaxGridX)),
                    static_cast<unsigned>(std::min(n_rows, kMaxGridY)));
    switch (act) {
      case GatedAct::SiLU:
        gated_act_kernel<T, V, 0><<<grid, block, 0, stream>>>(p);
        break;
      case GatedAct::GeluTanh:
        gated_act_kernel<T, V, 1><<<grid, block, 0, stream>>>(p);
        break;
      case GatedAct::GeluExact:
        gated_act_kernel<T, V, 2><<<grid, block, 0, stream>>>(p);
        break;
      default:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
  });
}

template <typename T>
cudaError_t rope(const T* x, int64_t B, int64_t S, int64_t H, int64_t D, int64_t x_sb, int64_t x_ss,
                 int64_t x_sh, const T* cos, const T* sin, int64_t cs_sb, int64_t cs_ss, int64_t rd,
                 T* out, cudaStream_t stream) {
  if (rd <= 0 || rd % 2 != 0 || rd > D) return cudaErrorInvalidValue;
  if (B <= 0 || S <= 0 || H <= 0) return cudaSuccess;
  RopeParams<T> p{x, B, S, H, D, x_sb, x_ss, x_sh, cos, sin, cs_sb, cs_ss, rd, out};
  // Every vector starts at a multiple of V within its row: i < rd/2, rd/2 + i, rd + j.
  const int v = vec_width<T>(rd / 2, {D, x_sb, x_ss, x_sh, cs_sb, cs_ss}, {x, cos, sin, out});
  return with_width<T>(v, [&](auto width) -> cudaError_t {
    constexpr int V = decltype(width)::value;
    const int64_t items = rd / 2 / V + (D - rd) / V;
    int tx = 1;
    while (tx < items && tx < 128) tx <<= 1;
    const int ty = tx >= 128 ? 1 : 128 / tx;
    const dim3 block(tx, ty);
    const dim3 grid(static_cast<unsigned>(std::min(ceil_div(B * H * S, ty), kMaxGridX)));
    rope_kernel<T, V><<<grid, block, 0, stream>>>(p);
    return cudaGetLastError();
  });
}

template <typename T>
cudaError_t nf4_dequantize(const Nf4Source& src, int64_t first, int64_t n, T* out, cudaStream_t stream) {
  if (src.block <= 0 || src.block % 2 != 0 || first % 2 != 0) return cudaErrorInvalidValue;
  if (src.absmax == nullptr && (src.absmax_q == nullptr || src.absmax_scale == nullptr || src.absmax_code == nullptr))
    return cudaErrorInvalidValue;
  if (n <= 0) return cudaSuccess;
  constexpr int kThreads = 256;
  int64_t done = 0;
  const bool vec = src.block % 16 == 0 && first % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(src.codes + first / 2) % 8 == 0 &&
                   reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (vec && n >= 16) {
    const int64_t n16 = n / 16;
    const dim3 grid(static_cast<unsigned>(std::min(ceil_div(n16, kThreads), kMaxGridX)));
    nf4_dequantize16_kernel<T><<<grid, kThreads, 0, stream>>>(src, first, n16, out);
    done = 16 * n16;
  }
  if (done < n) {
    const int64_t n_bytes = (n - done + 1) / 2;
    const dim3 grid(static_cast<unsigned>(std::min(ceil_div(n_bytes, kThreads), kMaxGridX)));
    nf4_dequantize_kernel<T><<<grid, kThreads, 0, stream>>>(src, first + done, n - done, out + done);
  }
  return cudaGetLastError();
}

#define KVPRIME_INSTANTIATE(T)                                                                     \
  template cudaError_t rms_norm<T>(const T*, RowLayout, const T*, T*, int64_t, int64_t, float,     \
                                   float, bool, cudaStream_t);                                     \
  template cudaError_t add_rms_norm<T>(const T*, RowLayout, const T*, RowLayout, const T*, T*,     \
                                       RowLayout, T*, int64_t, int64_t, float, float, bool,        \
                                       cudaStream_t);                                              \
  template cudaError_t gated_act<T>(const T*, RowLayout, T*, int64_t, int64_t, GatedAct,           \
                                    cudaStream_t);                                                 \
  template cudaError_t rope<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,     \
                               int64_t, const T*, const T*, int64_t, int64_t, int64_t, T*,         \
                               cudaStream_t);

template cudaError_t nf4_dequantize<float>(const Nf4Source&, int64_t, int64_t, float*, cudaStream_t);
template cudaError_t nf4_dequantize<__half>(const Nf4Source&, int64_t, int64_t, __half*, cudaStream_t);
template cudaError_t nf4_dequantize<__nv_bfloat16>(const Nf4Source&, int64_t, int64_t, __nv_bfloat16*,
                                                   cudaStream_t);
KVPRIME_INSTANTIATE(float)
KVPRIME_INSTANTIATE(__half)
KVPRIME_INSTANTIATE(__nv_bfloat16)
#undef KVPRIME_INSTANTIATE

}  // namespace kvprime::cuda_kernels
