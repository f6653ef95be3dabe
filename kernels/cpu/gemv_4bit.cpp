// The fused 4-bit matrix-vector product on the CPU: threads take output features (rows of
// W), each row's weights are dequantized once and applied to every row of A.
#include <algorithm>
#include <vector>

#include "bnb/quantize_4bit_cpu.h"
#include "element_io.h"

namespace bnb::cpu {

namespace {

// Rows of A handled per pass over a weight row: their sums stay in registers.
constexpr int64_t kRowsPerPass = 16;

template <DType T>
void gemv_rows(const void* A, const uint8_t* B, const float* code, const BlockScales& scales, const void* bias,
               void* out, int64_t M, int64_t N, int64_t K, int64_t blocksize) {
  using E = Element<T>;
  const auto* a = static_cast<const typename E::storage*>(A);
  const auto* bs = static_cast<const typename E::storage*>(bias);
  auto* o = static_cast<typename E::storage*>(out);
#pragma omp parallel
  {
    std::vector<float> w(static_cast<size_t>(K));  // one dequantized weight row
#pragma omp for schedule(static)
    for (int64_t row = 0; row < N; ++row) {
      for (int64_t k = 0; k < K; ++k) {
        const int64_t i = row * K + k;  // flattened weight index: its byte and its block
        const uint8_t byte = B[i / 2];
        const float v = code[(i & 1) ? (byte & 0xF) : (byte >> 4)] * block_scale(scales, i / blocksize);
        typename E::storage rounded;  // the weight as dequantize_4bit writes it in this dtype
        E::store(&rounded, 0, v);
        w[k] = E::load(&rounded, 0);
      }
      const float b = bs ? E::load(bs, row) : 0.f;
      for (int64_t m0 = 0; m0 < M; m0 += kRowsPerPass) {
        const int64_t rows = std::min(kRowsPerPass, M - m0);
        float acc[kRowsPerPass] = {};
        for (int64_t k = 0; k < K; ++k)
          for (int64_t r = 0; r < rows; ++r) acc[r] += E::load(a, (m0 + r) * K + k) * w[k];
        for (int64_t r = 0; r < rows; ++r) E::store(o, (m0 + r) * N + row, acc[r] + b);
      }
    }
  }
}

}  // namespace

void gemv_4bit(DType dtype, const void* A, const uint8_t* B, const float* code, const BlockScales& scales,
               const void* bias, void* out, int64_t M, int64_t N, int64_t K, int64_t blocksize) {
  dispatch_dtype(dtype, [&](auto tag) {
    gemv_rows<decltype(tag)::value>(A, B, code, scales, bias, out, M, N, K, blocksize);
  });
}

}  // namespace bnb::cpu
