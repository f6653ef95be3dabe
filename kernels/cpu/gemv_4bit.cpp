// The fused 4-bit matrix-vector product on the CPU: threads take output features (rows of
// W), each row's weights are dequantized once (into a float row, rounded to the dtype as
// dequantize_4bit writes them) and applied to every row of A, converted to float once.
#include <algorithm>
#include <vector>

#include "bnb/quantize_4bit_cpu.h"
#include "blockwise_dequantize.h"
#include "element_io.h"

namespace bnb::cpu {

namespace {

// Weight row `row` dequantized into w[0, K), each value rounded to T as dequantize_4bit writes
// it. Per block (a row may hold several, or the end of one): its 16 possible values made once,
// then one lookup a weight (the scale of nested statistics costs a product and a sum, and the
// rounding to a 16-bit dtype a few integer steps: a weight's own share of both is 1/blocksize).
template <DType T>
void dequantize_row(const uint8_t* B, const float* code, const BlockScales& scales, int64_t row, int64_t K,
                    int64_t blocksize, float* w) {
  using E = Element<T>;
  const int64_t first = row * K;  // flattened index of the row's first weight
  for (int64_t k = 0; k < K;) {
    const int64_t block = (first + k) / blocksize;
    const int64_t end = std::min(K, (block + 1) * blocksize - first);
    typename E::storage rounded[16];
    block_values_4bit<E>(code, block_scale(scales, block), rounded);
    float value[16];
    for (int q = 0; q < 16; ++q) value[q] = E::load(rounded, q);
    if (k < end && ((first + k) & 1)) {  // a block starting on a byte's second code
      w[k] = value[B[(first + k) / 2] & 0xF];
      ++k;
    }
    for (; k + 1 < end; k += 2) {  // whole bytes: the first code in the high nibble
      const uint8_t byte = B[(first + k) / 2];
      w[k] = value[byte >> 4];
      w[k + 1] = value[byte & 0xF];
    }
    if (k < end) {
      w[k] = value[B[(first + k) / 2] >> 4];
      ++k;
    }
  }
}

// sum_k a[k] w[k] in kLanes independent partial sums (so the compiler can keep them in vector
// registers without reassociating anything), added up in a fixed order at the end.
float dot(const float* a, const float* w, int64_t K) {
  constexpr int kLanes = 8;
  float part[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= K; k += kLanes)
    for (int j = 0; j < kLanes; ++j) part[j] += a[k + j] * w[k + j];
  for (int j = 0; k < K; ++k, ++j) part[j] += a[k] * w[k];
  float s = 0.f;
  for (int j = 0; j < kLanes; ++j) s += part[j];
  return s;
}

template <DType T>
void gemv_rows(const void* A, const uint8_t* B, const float* code, const BlockScales& scales, const void* bias,
               void* out, int64_t M, int64_t N, int64_t K, int64_t blocksize) {
  using E = Element<T>;
  const auto* a16 = static_cast<const typename E::storage*>(A);
  const auto* bs = static_cast<const typename E::storage*>(bias);
  auto* o = static_cast<typename E::storage*>(out);
  // A in float32 once (exact for every dtype), not once for every output feature.
  std::vector<float> a(static_cast<size_t>(M * K));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < M * K; ++i) a[static_cast<size_t>(i)] = E::load(a16, i);
#pragma omp parallel
  {
    std::vector<float> w(static_cast<size_t>(K));  // one dequantized weight row
#pragma omp for schedule(static)
    for (int64_t row = 0; row < N; ++row) {
      dequantize_row<T>(B, code, scales, row, K, blocksize, w.data());
      const float b = bs ? E::load(bs, row) : 0.f;
      for (int64_t r = 0; r < M; ++r) E::store(o, r * N + row, dot(a.data() + r * K, w.data(), K) + b);
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
