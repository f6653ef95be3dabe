// When the cluster kernel takes a call (the dispatcher asks before every 16-bit call).
#include "weight_linear_cluster.cuh"

namespace bnb::cuda {

bool weight_linear_cluster_applies(int64_t M, int64_t N, int64_t K) {
  if (M < 1 || M > kClusterMaxTokens || N < 1 || K < 1 || N > (int64_t(1) << 40)) return false;
  const int64_t ks = cluster_slice(K);
  const int tok_tiles = M <= 8 ? 1 : M <= 16 ? 2 : 4;
  const int64_t smem = int64_t(8 * tok_tiles) * cluster_a_stride(ks) * 2 +
                       2 * int64_t(8 * tok_tiles) * cluster_red_stride() * 4;
  if (smem > kClusterMaxSmem) return false;  // very large K: the split-K kernel
  const int64_t groups_max = (N + 63) / 64;
  return groups_max <= 0x7fffffff && device_caps().clusters();
}

}  // namespace bnb::cuda
