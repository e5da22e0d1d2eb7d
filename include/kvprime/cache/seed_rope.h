// The seed's single-theta RoPE correction, reproduced exactly for comparison and for caches whose
// model is not at hand. It recomputes inv_freq from one `theta` and a head_dim the caller supplies
// (the seed took hidden_size / num_heads), which is only right for unscaled default RoPE with a
// full rotary head: it is wrong under llama3/yarn/linear scaling, partial rotary and Gemma 3's
// per-layer bases. Use correct_rope_positions (cache/surgery.h) for real work.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <utility>

#include "kvprime/cache/kv_cache.h"
#include "kvprime/model/config.h"

namespace kvprime {

// (cos, sin), each [head_dim] float32, rotating by -offset, computed as the seed did:
//   inv_freq[i] = 1 / theta^(2i / head_dim) in float32 (HF's default buffer), angle = -offset *
//   inv_freq multiplied in float32 and widened to float64, cos/sin of cat(angle, angle) in float64.
// key_at(p) * cos + rotate_half(key_at(p)) * sin == key_at(p - offset).
std::pair<at::Tensor, at::Tensor> build_rope_correction(int64_t offset, int64_t head_dim,
                                                        double theta);

// config.rope_theta as the seed read it (5.x files: rope_parameters.rope_theta, for Gemma 3 the
// global layers' one); 10000 when absent.
double get_rope_theta(const RawConfig& config);

// The seed's correct_rope_positions(_with_bos) applied with build_rope_correction to every layer
// (the same cos/sin for all layers, as the seed does). Positions are updated like the real one.
KVCache correct_rope_positions_single_theta(const KVCache& cache, int64_t offset, double theta,
                                            int64_t head_dim, bool keep_bos);

}  // namespace kvprime
