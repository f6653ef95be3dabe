// The CUDA quantile estimator (bnb/quantiles_cuda.h) against its CPU twin: both run the
// two-level key histogram of bnb/quantiles.h, so each estimate must lie in the final bin
// (21-bit key prefix) of the exact order statistic, the documented rank bound; where that
// bin holds one distinct value (16-bit inputs) both equal it.
#include <algorithm>
#include <tuple>

#include "bnb/quantiles.h"
#include "bnb/quantiles_cpu.h"
#include "bnb/quantiles_cuda.h"
#include "cuda_test_util.h"

namespace {

using bnb::DType;
using namespace bnb_test;
namespace q = bnb::quantiles;

std::vector<float> cuda_quantiles(const Values& a, double offset, int num_quantiles) {
  const int64_t n = a.size();
  const size_t bytes = bnb::cuda::estimate_quantiles_workspace_bytes(a.dtype, n);
  EXPECT_GT(bytes, 0u);
  DeviceBuffer<uint8_t> a_d = to_device(a);
  DeviceBuffer<uint8_t> workspace(bytes);  // cudaMalloc: 256-byte aligned
  workspace.fill_bytes(0xab);              // need not be zeroed
  DeviceBuffer<float> out(static_cast<size_t>(num_quantiles));
  EXPECT_EQ(bnb::cuda::estimate_quantiles(a.dtype, a_d.get(), n, offset, num_quantiles, out.get(), workspace.get(),
                                          bytes, nullptr),
            cudaSuccess);
  return out.host();
}

float order_statistic(const Values& a, int64_t rank) {
  std::vector<float> v(static_cast<size_t>(a.size()));
  for (int64_t i = 0; i < a.size(); ++i) v[static_cast<size_t>(i)] = a.at(i);
  std::nth_element(v.begin(), v.begin() + rank, v.end());
  return v[static_cast<size_t>(rank)];
}

class QuantilesCuda : public CudaTestWithParam<std::tuple<DType, int64_t, int>> {};

TEST_P(QuantilesCuda, WithinTheRankBoundLikeCpu) {
  const auto [dtype, n, num_quantiles] = GetParam();
  const Values a = random_values(dtype, n, uint32_t(n) + uint32_t(num_quantiles), 4.f);
  const double offset = 1.0 / 512;
  std::vector<float> cpu(static_cast<size_t>(num_quantiles));
  bnb::cpu::estimate_quantiles(dtype, a.data(), n, offset, num_quantiles, cpu.data());
  const std::vector<float> gpu = cuda_quantiles(a, offset, num_quantiles);
  for (int j = 0; j < num_quantiles; ++j) {
    const float exact = order_statistic(a, q::quantile_target(n, offset, num_quantiles, j));
    EXPECT_EQ(q::order_key(gpu[static_cast<size_t>(j)]) >> q::kFinalShift, q::order_key(exact) >> q::kFinalShift)
        << "quantile " << j << ": " << gpu[static_cast<size_t>(j)] << " vs exact " << exact;
    if (dtype != DType::Float32) {  // one distinct value per final bin: exact on both
      EXPECT_EQ(gpu[static_cast<size_t>(j)], exact) << j;
      EXPECT_EQ(cpu[static_cast<size_t>(j)], exact) << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    DTypesSizes, QuantilesCuda,
    ::testing::Combine(::testing::Values(DType::Float32, DType::Float16, DType::BFloat16),
                       // the smallest input, tails, and enough values for the clusters of sm_90
                       ::testing::Values<int64_t>(q::kMinValues, 70001, 3000017), ::testing::Values(1, 17, 256)));

}  // namespace
