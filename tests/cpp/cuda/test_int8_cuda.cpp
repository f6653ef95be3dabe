// The CUDA LLM.int8() launchers (bnb/int8_cuda.h) against their CPU twins on the same
// inputs. Quantization and the int32 GEMM are exact on both (same IEEE rounding steps);
// products accumulated in float32 are compared within a stated tolerance, since the two
// devices add in different orders.
#include <algorithm>
#include <tuple>

#include "bnb/int8_cpu.h"
#include "bnb/int8_cuda.h"
#include "cuda_test_util.h"

namespace {

using bnb::DType;
using namespace bnb_test;

constexpr DType kDTypes[] = {DType::Float32, DType::Float16, DType::BFloat16};

// Random rows with a few planted outliers (|v| = 20 > threshold 6) in columns 3 and cols - 2,
// and one exactly at the threshold (an outlier too) in column 1.
Values int8_input(DType dtype, int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.5f);
  std::vector<float> f(static_cast<size_t>(rows * cols));
  for (auto& x : f) x = normal(rng);
  if (rows > 0 && cols > 4) {
    f[static_cast<size_t>((rows / 2) * cols + 3)] = 20.f;
    f[static_cast<size_t>((rows - 1) * cols + cols - 2)] = -20.f;
    f[1] = -6.f;
  }
  return from_floats(dtype, f);
}

std::vector<int8_t> random_int8(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> pick(-127, 127);
  std::vector<int8_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = int8_t(pick(rng));
  return v;
}

std::vector<float> random_positive(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.1f, 2.f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

// ---- row-wise and column-wise quantization -------------------------------------------

class Int8QuantCuda : public CudaTestWithParam<std::tuple<DType, std::pair<int64_t, int64_t>, float>> {};

TEST_P(Int8QuantCuda, VectorwiseAndColwiseMatchCpu) {
  const auto [dtype, shape, threshold] = GetParam();
  const auto [rows, cols] = shape;
  const Values a = int8_input(dtype, rows, cols, uint32_t(rows * 31 + cols));

  std::vector<int8_t> q_cpu(static_cast<size_t>(rows * cols));
  std::vector<float> stats_cpu(static_cast<size_t>(rows));
  std::vector<uint8_t> flags_cpu(static_cast<size_t>(cols), 0);
  std::vector<int32_t> list_cpu(static_cast<size_t>(cols + 1), 0);
  bnb::cpu::int8_vectorwise_quant(dtype, a.data(), rows, cols, threshold, q_cpu.data(), stats_cpu.data(),
                                  reinterpret_cast<bool*>(flags_cpu.data()));
  if (threshold > 0.f) bnb::cpu::int8_outlier_list(reinterpret_cast<const bool*>(flags_cpu.data()), cols,
                                                   list_cpu.data());

  DeviceBuffer<uint8_t> a_d = to_device(a);
  DeviceBuffer<int8_t> q_d(static_cast<size_t>(rows * cols));
  DeviceBuffer<float> stats_d(static_cast<size_t>(rows));
  DeviceBuffer<uint8_t> flags_d(static_cast<size_t>(cols));
  DeviceBuffer<int32_t> list_d(static_cast<size_t>(bnb::cuda::int8_outlier_scratch_size(cols)));
  q_d.fill_bytes(0x55);  // every output is written by the launcher
  flags_d.fill_bytes(1);
  list_d.fill_bytes(0x7f);
  ASSERT_EQ(bnb::cuda::int8_vectorwise_quant(dtype, a_d.get(), rows, cols, threshold, q_d.get(), stats_d.get(),
                                             reinterpret_cast<bool*>(flags_d.get()), list_d.get(), nullptr),
            cudaSuccess);
  EXPECT_EQ(q_d.host(), q_cpu);
  EXPECT_EQ(stats_d.host(), stats_cpu);
  EXPECT_EQ(flags_d.host(), flags_cpu);
  EXPECT_EQ(list_d.host(), list_cpu);

  // Column-wise, with the row pass's outlier columns.
  std::vector<int8_t> qc_cpu(static_cast<size_t>(rows * cols));
  std::vector<float> col_cpu(static_cast<size_t>(cols));
  bnb::cpu::int8_colwise_quant(dtype, a.data(), rows, cols, threshold, reinterpret_cast<const bool*>(flags_cpu.data()),
                               qc_cpu.data(), col_cpu.data());
  DeviceBuffer<uint8_t> flags_c(flags_cpu);
  DeviceBuffer<int8_t> qc_d(static_cast<size_t>(rows * cols));
  DeviceBuffer<float> col_d(static_cast<size_t>(cols));
  ASSERT_EQ(bnb::cuda::int8_colwise_quant(dtype, a_d.get(), rows, cols, threshold,
                                          reinterpret_cast<const bool*>(flags_c.get()), qc_d.get(), col_d.get(),
                                          nullptr),
            cudaSuccess);
  EXPECT_EQ(qc_d.host(), qc_cpu);
  EXPECT_EQ(col_d.host(), col_cpu);
}

INSTANTIATE_TEST_SUITE_P(
    DTypesShapes, Int8QuantCuda,
    ::testing::Combine(::testing::ValuesIn(kDTypes),
                       ::testing::Values(std::make_pair<int64_t, int64_t>(0, 5), std::make_pair<int64_t, int64_t>(1, 13),
                                         std::make_pair<int64_t, int64_t>(37, 131),
                                         std::make_pair<int64_t, int64_t>(65, 4100),
                                         std::make_pair<int64_t, int64_t>(300, 1024)),
                       ::testing::Values(0.f, 6.f)));

// Rows holding NaN, one Inf or two Infs (bnb/nonfinite.h: absmax NaN, Inf, NaN), beside plain
// rows: the same codes and statistics on both (NaN matching NaN).
TEST_F(CudaTest, Int8VectorwiseNonFiniteRowsMatchCpu) {
  for (const DType dtype : kDTypes) {
    for (const int64_t cols : {int64_t(131), int64_t(4100)}) {
      const int64_t rows = 6;
      std::vector<float> f(static_cast<size_t>(rows * cols));
      std::mt19937 rng{uint32_t(cols)};
      std::normal_distribution<float> normal(0.f, 1.5f);
      for (auto& x : f) x = normal(rng);
      f[size_t(1 * cols + 7)] = NAN;
      f[size_t(2 * cols + 9)] = -INFINITY;
      f[size_t(3 * cols + 1)] = INFINITY;
      f[size_t(3 * cols + cols - 1)] = INFINITY;
      const Values a = from_floats(dtype, f);
      std::vector<int8_t> q_cpu(static_cast<size_t>(rows * cols));
      std::vector<float> stats_cpu(static_cast<size_t>(rows));
      bnb::cpu::int8_vectorwise_quant(dtype, a.data(), rows, cols, 0.f, q_cpu.data(), stats_cpu.data(), nullptr);
      DeviceBuffer<uint8_t> a_d = to_device(a);
      DeviceBuffer<int8_t> q_d(static_cast<size_t>(rows * cols));
      DeviceBuffer<float> stats_d(static_cast<size_t>(rows));
      ASSERT_EQ(bnb::cuda::int8_vectorwise_quant(dtype, a_d.get(), rows, cols, 0.f, q_d.get(), stats_d.get(), nullptr,
                                                 nullptr, nullptr),
                cudaSuccess);
      EXPECT_EQ(q_d.host(), q_cpu);
      expect_close(from_floats(DType::Float32, stats_d.host()), from_floats(DType::Float32, stats_cpu), 0.f, "stats");
      EXPECT_TRUE(std::isnan(stats_cpu[1]) && std::isinf(stats_cpu[2]) && std::isnan(stats_cpu[3]));
    }
  }
}

// Columns holding NaN, one Inf or two Infs in different row ranges (rows > 256: the CUDA
// statistics merge partial maxima of row ranges atomically): absmax NaN, Inf, NaN as the CPU's.
TEST_F(CudaTest, Int8ColwiseNonFiniteColumnsMatchCpu) {
  for (const DType dtype : kDTypes) {
    const int64_t rows = 700, cols = 37;
    std::vector<float> f(static_cast<size_t>(rows * cols));
    std::mt19937 rng{11};
    std::normal_distribution<float> normal(0.f, 1.5f);
    for (auto& x : f) x = normal(rng);
    f[size_t(600 * cols + 1)] = NAN;
    f[size_t(3 * cols + 2)] = -INFINITY;
    f[size_t(10 * cols + 3)] = INFINITY;
    f[size_t(690 * cols + 3)] = -INFINITY;
    const Values a = from_floats(dtype, f);
    std::vector<int8_t> q_cpu(static_cast<size_t>(rows * cols));
    std::vector<float> col_cpu(static_cast<size_t>(cols));
    bnb::cpu::int8_colwise_quant(dtype, a.data(), rows, cols, 0.f, nullptr, q_cpu.data(), col_cpu.data());
    EXPECT_TRUE(std::isnan(col_cpu[1]) && std::isinf(col_cpu[2]) && std::isnan(col_cpu[3]) && std::isfinite(col_cpu[0]));
    DeviceBuffer<uint8_t> a_d = to_device(a);
    DeviceBuffer<int8_t> q_d(static_cast<size_t>(rows * cols));
    DeviceBuffer<float> col_d(static_cast<size_t>(cols));
    ASSERT_EQ(bnb::cuda::int8_colwise_quant(dtype, a_d.get(), rows, cols, 0.f, nullptr, q_d.get(), col_d.get(), nullptr),
              cudaSuccess);
    EXPECT_EQ(q_d.host(), q_cpu);
    expect_close(from_floats(DType::Float32, col_d.host()), from_floats(DType::Float32, col_cpu), 0.f, "col stats");
  }
}

TEST_F(CudaTest, Int8VectorwiseDequantMatchesCpu) {
  for (const auto [rows, cols] : {std::make_pair<int64_t, int64_t>(0, 7), std::make_pair<int64_t, int64_t>(33, 1001)}) {
    const std::vector<int8_t> q = random_int8(rows * cols, 5);
    const std::vector<float> stats = random_positive(rows, 6);
    std::vector<float> cpu(static_cast<size_t>(rows * cols));
    bnb::cpu::int8_vectorwise_dequant(q.data(), stats.data(), rows, cols, cpu.data());
    DeviceBuffer<int8_t> q_d(q);
    DeviceBuffer<float> stats_d(stats);
    DeviceBuffer<float> out_d(static_cast<size_t>(rows * cols));
    ASSERT_EQ(bnb::cuda::int8_vectorwise_dequant(q_d.get(), stats_d.get(), rows, cols, out_d.get(), nullptr),
              cudaSuccess);
    expect_close(from_floats(DType::Float32, out_d.host()), from_floats(DType::Float32, cpu), 1e-6f, "dequant");
  }
}

// ---- the int32 GEMM: both paths exact --------------------------------------------------

class Int8MatmulCuda : public CudaTestWithParam<std::tuple<int64_t, int64_t, int64_t>> {};

TEST_P(Int8MatmulCuda, BothPathsMatchCpu) {
  const auto [M, N, K] = GetParam();
  const std::vector<int8_t> A = random_int8(M * K, 1), B = random_int8(N * K, 2);
  std::vector<int32_t> cpu(static_cast<size_t>(M * N));
  bnb::cpu::int8_linear_matmul(A.data(), B.data(), cpu.data(), M, N, K);
  DeviceBuffer<int8_t> A_d(A), B_d(B);
  DeviceBuffer<int32_t> C_d(static_cast<size_t>(M * N));
  const size_t ws_bytes = static_cast<size_t>(32) << 20;
  DeviceBuffer<uint8_t> ws(ws_bytes);
  C_d.fill_bytes(0x33);
  ASSERT_EQ(bnb::cuda::int8_linear_matmul(A_d.get(), B_d.get(), C_d.get(), M, N, K, ws.get(), ws_bytes, nullptr),
            cudaSuccess);
  EXPECT_EQ(C_d.host(), cpu) << "int8_linear_matmul";
  C_d.fill_bytes(0x33);
  ASSERT_EQ(bnb::cuda::int8_linear_matmul_fallback(A_d.get(), B_d.get(), C_d.get(), M, N, K, nullptr), cudaSuccess);
  EXPECT_EQ(C_d.host(), cpu) << "tiled kernel";
}

INSTANTIATE_TEST_SUITE_P(Shapes, Int8MatmulCuda,
                         ::testing::Values(std::make_tuple<int64_t, int64_t, int64_t>(0, 8, 16),
                                           std::make_tuple<int64_t, int64_t, int64_t>(4, 8, 0),
                                           std::make_tuple<int64_t, int64_t, int64_t>(19, 70, 1027),  // cuBLASLt refuses
                                           std::make_tuple<int64_t, int64_t, int64_t>(64, 96, 512),
                                           std::make_tuple<int64_t, int64_t, int64_t>(130, 260, 1028)));

// ---- dequantization of the GEMM, with and without the outlier product -----------------

class Int8MmDequantCuda : public CudaTestWithParam<std::tuple<DType, bool>> {};

TEST_P(Int8MmDequantCuda, MatchesCpu) {
  const auto [dtype, with_bias] = GetParam();
  const int64_t M = 37, N = 133, K = 300, sub_k = 3;
  const float tol = dtype_tolerance(dtype);
  const std::vector<int32_t> C = [&] {
    std::vector<int32_t> c(static_cast<size_t>(M * N));
    std::mt19937 rng(4);
    std::uniform_int_distribution<int> pick(-300000, 300000);
    for (auto& x : c) x = pick(rng);
    return c;
  }();
  const std::vector<float> rs = random_positive(M, 7), cs = random_positive(N, 8);
  const Values bias = random_values(dtype, N, 9);
  const Values sub_A = random_values(dtype, M * sub_k, 10), sub_B = random_values(dtype, N * sub_k, 11);
  const void* bias_cpu = with_bias ? bias.data() : nullptr;

  DeviceBuffer<int32_t> C_d(C);
  DeviceBuffer<float> rs_d(rs), cs_d(cs);
  DeviceBuffer<uint8_t> bias_d = to_device(bias), sub_A_d = to_device(sub_A), sub_B_d = to_device(sub_B);
  const void* bias_dev = with_bias ? bias_d.get() : nullptr;

  for (const int64_t k : {int64_t(0), sub_k}) {
    SCOPED_TRACE(k ? "with a 16-bit sub-product" : "no sub-product");
    Values cpu = empty_values(dtype, M * N);
    bnb::cpu::int8_mm_dequant(dtype, C.data(), rs.data(), cs.data(), bias_cpu, k ? sub_A.data() : nullptr,
                              k ? sub_B.data() : nullptr, k, M, N, cpu.data());
    DeviceBuffer<uint8_t> out_d(cpu.bytes.size());
    ASSERT_EQ(bnb::cuda::int8_mm_dequant(dtype, C_d.get(), rs_d.get(), cs_d.get(), bias_dev,
                                         k ? sub_A_d.get() : nullptr, k ? sub_B_d.get() : nullptr, k, M, N,
                                         out_d.get(), nullptr),
              cudaSuccess);
    expect_close(from_device(dtype, out_d), cpu, tol, "int8_mm_dequant");
  }

  // The outlier product read on the device from a column list (more columns than are fused).
  const int64_t fused = bnb::cuda::int8_outlier_fused_cols(K);
  std::vector<int32_t> list(static_cast<size_t>(K + 1), 0);
  for (int64_t c = 1, i = 0; c < K; c += 3, ++i) list[static_cast<size_t>(1 + list[0]++)] = int32_t(c);
  ASSERT_GT(list[0], fused);
  const Values X = random_values(dtype, M * K, 12), W16 = random_values(dtype, N * K, 13);
  const std::vector<int8_t> W8 = random_int8(N * K, 14);
  DeviceBuffer<int32_t> list_d(list);
  DeviceBuffer<uint8_t> X_d = to_device(X), W16_d = to_device(W16);
  DeviceBuffer<int8_t> W8_d(W8);
  DeviceBuffer<uint8_t> sub_BT(static_cast<size_t>(fused * N * bnb::dtype_size(dtype)));
  for (const bool w_int8 : {false, true}) {
    SCOPED_TRACE(w_int8 ? "int8 weight" : "16-bit weight");
    const void* W_cpu = w_int8 ? static_cast<const void*>(W8.data()) : W16.data();
    const void* W_dev = w_int8 ? static_cast<const void*>(W8_d.get()) : W16_d.get();
    Values cpu = empty_values(dtype, M * N);
    bnb::cpu::int8_mm_dequant_outliers(dtype, C.data(), rs.data(), cs.data(), bias_cpu, X.data(), W_cpu, w_int8,
                                       list.data(), M, N, K, cpu.data());
    DeviceBuffer<uint8_t> out_d(cpu.bytes.size());
    ASSERT_EQ(bnb::cuda::int8_mm_dequant_outliers(dtype, C_d.get(), rs_d.get(), cs_d.get(), bias_dev, X_d.get(),
                                                  W_dev, w_int8, list_d.get(), M, N, K, out_d.get(), sub_BT.get(),
                                                  nullptr),
              cudaSuccess);
    // The outlier sum adds ~100 products of O(1): its rounding is relative to its size.
    expect_close(from_device(dtype, out_d), cpu, 8 * tol, "int8_mm_dequant_outliers");
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, Int8MmDequantCuda, ::testing::Combine(::testing::ValuesIn(kDTypes), ::testing::Bool()));

// ---- the decode product: every kernel family on the shapes that select it ------------------

class Int8WeightLinearCuda : public CudaTestWithParam<std::tuple<DType, std::tuple<int64_t, int64_t, int64_t>>> {};

TEST_P(Int8WeightLinearCuda, MatchesCpu) {
  const auto [dtype, shape] = GetParam();
  const auto [M, N, K] = shape;
  const Values A = random_values(dtype, M * K, uint32_t(M * 7 + K));
  const std::vector<int8_t> CB = random_int8(N * K, uint32_t(N));
  const std::vector<float> SCB = random_positive(N, 3);
  const Values bias = random_values(dtype, N, 4);
  Values cpu = empty_values(dtype, M * N);
  bnb::cpu::int8_weight_linear(dtype, A.data(), CB.data(), SCB.data(), bias.data(), M, N, K, cpu.data());

  DeviceBuffer<uint8_t> A_d = to_device(A), bias_d = to_device(bias);
  DeviceBuffer<int8_t> CB_d(CB);
  DeviceBuffer<float> SCB_d(SCB);
  const int64_t floats = bnb::cuda::int8_weight_linear_workspace_floats(dtype, M, N, K);
  DeviceBuffer<float> ws(static_cast<size_t>(floats));
  DeviceBuffer<uint8_t> out_d(cpu.bytes.size());
  out_d.fill_bytes(0x7f);
  ASSERT_EQ(bnb::cuda::int8_weight_linear(dtype, A_d.get(), CB_d.get(), SCB_d.get(), bias_d.get(), M, N, K,
                                          out_d.get(), ws.get(), nullptr),
            cudaSuccess);
  // Sums of K products of O(1) values: float32 accumulation in another order, then one
  // rounding to the dtype; compared relative to the largest output.
  const Values got = from_device(dtype, out_d);
  float scale = 1.f;
  for (int64_t i = 0; i < cpu.size(); ++i) scale = std::max(scale, std::fabs(cpu.at(i)));
  const float tol = (dtype == DType::Float32 ? 1e-4f : dtype_tolerance(dtype)) * scale;
  int failures = 0;
  for (int64_t i = 0; i < cpu.size() && failures < 10; ++i)
    if (!(std::fabs(got.at(i) - cpu.at(i)) <= tol)) {
      ADD_FAILURE() << "[" << i << "]: " << got.at(i) << " vs CPU " << cpu.at(i);
      ++failures;
    }
}

INSTANTIATE_TEST_SUITE_P(
    DTypesShapes, Int8WeightLinearCuda,
    ::testing::Combine(::testing::ValuesIn(kDTypes),
                       ::testing::Values(
                           // M x N x K. 16-bit: the cluster kernel on sm_90 up to 32 rows while a K
                           // slice fits its shared memory, split-K otherwise; float32: CUDA cores.
                           std::make_tuple<int64_t, int64_t, int64_t>(1, 7, 13),
                           std::make_tuple<int64_t, int64_t, int64_t>(5, 40, 0),  // K == 0: the bias
                           std::make_tuple<int64_t, int64_t, int64_t>(9, 300, 4100),
                           std::make_tuple<int64_t, int64_t, int64_t>(16, 64, 8192),
                           std::make_tuple<int64_t, int64_t, int64_t>(32, 1025, 1000),
                           std::make_tuple<int64_t, int64_t, int64_t>(40, 70, 520),     // split-K: > 32 rows
                           std::make_tuple<int64_t, int64_t, int64_t>(32, 40, 24576),  // split-K: large K
                           std::make_tuple<int64_t, int64_t, int64_t>(0, 8, 64))));      // empty

}  // namespace
