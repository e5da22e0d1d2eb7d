#include "kvprime/cache/compare.h"

namespace kvprime {

LayerDistance relative_l2_per_layer(const KVCache& reference, const KVCache& other, const std::string& what) {
  reference.check_compatible(other, what);
  const int64_t L = reference.n_layer();
  LayerDistance out;
  if (L == 0) return out;
  // [2, L] on the caches' device, copied once: row 0 keys, row 1 values.
  std::vector<at::Tensor> rel;
  for (const bool keys : {true, false})
    for (int64_t il = 0; il < L; ++il) {
      const at::Tensor r = (keys ? reference.key(il) : reference.value(il)).to(at::kDouble);
      const at::Tensor o = (keys ? other.key(il) : other.value(il)).to(at::kDouble);
      rel.push_back((o - r).norm() / r.norm().clamp_min(1e-30));
    }
  const at::Tensor host = at::stack(rel).cpu();
  const double* p = host.data_ptr<double>();
  out.key.assign(p, p + L);
  out.value.assign(p + L, p + 2 * L);
  return out;
}

}  // namespace kvprime
