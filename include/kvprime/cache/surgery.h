// Cache surgery: the seed's operations on a built cache (truncate, re-position, mix caches).
//
// Every function here is functional: it returns a new KVCache and never writes into the tensors
// of its inputs (a returned cache may share untouched tensors with an input, which is safe because
// no kvprime operation modifies a tensor in place). This removes the seed's trap of HF caches being
// mutated by whoever holds them.
//
// Slots vs positions (see cache/kv_cache.h): surgery keeps slot order; re-positioning rotates keys
// with the model's own per-layer rotary frequencies (model/rope.h, Rotary::shift) and updates the
// tracked positions, so a corrected cache knows where its keys now sit.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "kvprime/cache/kv_cache.h"

namespace kvprime {

class Model;

// ---- truncation -------------------------------------------------------------------------------

// The last keep_len slots (seed: extract_and_truncate_cache). 0 < keep_len <= length.
KVCache extract_and_truncate_cache(const KVCache& cache, int64_t keep_len);

// Slot 0 (BOS) followed by the last doc_len slots (seed: extract_and_truncate_cache_with_bos).
// 0 <= doc_len < length; the result has 1 + doc_len slots.
KVCache extract_and_truncate_cache_with_bos(const KVCache& cache, int64_t doc_len);

// ---- re-positioning (model's real RoPE) -------------------------------------------------------

// Re-rotates every layer's keys from their tracked positions to `new_positions` ([B, S] int64, or
// [S] broadcast over the batch) with that layer's Rotary (rope scaling, partial rotary, Gemma 3's
// local/global bases all honoured), and records the new positions. Values are untouched.
KVCache reposition_keys(const KVCache& cache, const at::Tensor& new_positions, const Model& model);

// Moves every slot `offset` positions back (position p -> p - offset): seed correct_rope_positions.
KVCache correct_rope_positions(const KVCache& cache, int64_t offset, const Model& model);
// The same for slots 1.. only; slot 0 (BOS) stays bit-identical: seed correct_rope_positions_with_bos.
KVCache correct_rope_positions_with_bos(const KVCache& cache, int64_t offset, const Model& model);

// The numerical noise of a correction without moving anything: keys of slots 1.. are rotated
// +offset and back -offset, each step rounded to the cache's dtype (float16/bfloat16 caches get
// real rounding noise, float32 only float32 rounding). BOS and values untouched; positions kept.
KVCache apply_rope_roundtrip_noise(const KVCache& cache, int64_t offset, const Model& model);

// ---- mixing caches ----------------------------------------------------------------------------
// Mixing requires the same model, dtype, device, batch and length (KVCache::check_compatible) and
// the same token ids where both caches know them: combining a bare and a primed cache whose
// document tokens differ (the BPE boundary trap) is an error that points at build_matched_caches.

// Keys (and positions) of `keys_from`, values of `values_from` (seed: build_hybrid_cache).
KVCache build_hybrid_cache(const KVCache& keys_from, const KVCache& values_from);

// `target` with slot 0's keys and values (every layer) taken from `source` (seed: swap_bos_entry).
// Only slot 0 is compared: the caches may differ in length.
KVCache swap_bos_entry(const KVCache& target, const KVCache& source);

// `target` with the values of the listed layers taken from `source` (seed: replace_values_at_layers).
KVCache replace_values_at_layers(const KVCache& target, const KVCache& source,
                                 const std::vector<int64_t>& layers);

// Keys of `a`; values (1 - alpha) * a + alpha * b, blended in float32 and rounded once to the
// cache dtype. alpha = 0 gives a's values exactly, 1 gives b's.
KVCache interpolate_values(const KVCache& a, const KVCache& b, double alpha);
// One alpha per layer (size n_layer).
KVCache interpolate_values(const KVCache& a, const KVCache& b, const std::vector<double>& alpha);

// Per-layer source selection: layer il takes its keys from sources[key_source[il]] and its values
// from sources[value_source[il]]. Positions follow the source of layer 0's keys; all sources must
// hold keys at the same positions for this to be meaningful, so differing positions are an error.
KVCache select_layer_sources(const std::vector<const KVCache*>& sources,
                             const std::vector<int64_t>& key_source,
                             const std::vector<int64_t>& value_source);

}  // namespace kvprime
