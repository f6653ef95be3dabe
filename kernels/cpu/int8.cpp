// LLM.int8() on the CPU: row/column int8 quantization with outlier columns, an int8 GEMM with
// int32 accumulation, and the dequantization that fuses bias and the 16-bit outlier product.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "bnb/int8_cpu.h"
#include "bnb/nonfinite.h"
#include "element_io.h"

namespace bnb::cpu {

namespace {

constexpr float kInv127 = 1.0f / 127.0f;
constexpr float kInv127Sq = 1.0f / (127.0f * 127.0f);

// The same rounding as the GPU (__float2int_rn): nearest, ties to even.
inline int8_t round_to_int8(float v, float scale) {
  const float p = v * scale;
  if (p != p) return int8_code_of_nan_product(v);  // rows holding NaN or Inf (bnb/nonfinite.h)
  const float q = std::nearbyint(p);
  return int8_t(std::min(127.f, std::max(-127.f, q)));
}

// 127 * (1 / absmax), in this order: the reference library rounds this way, and the ties it
// decides (x * scale landing on .5) must fall the same side for checkpoints to match bit for bit.
inline float scale_of(float absmax) { return absmax > 0.f ? 127.0f * (1.0f / absmax) : 0.f; }

// Whether a value counts towards the statistics: everything when there is no threshold.
inline bool regular(float a, float threshold) { return threshold <= 0.f || a < threshold; }

// The dequantize loop every dequantize op shares, in the GPU's order of operations: element
// (m, n) of the int32 product scaled by its row and column statistics, plus the bias, then
// whatever `add(m, n, v)` adds to v in place (the outlier product), rounded to the dtype.
template <class E, class Add>
void dequant_rows(const int32_t* C, const float* row_stats, const float* col_stats, const typename E::storage* bias,
                  int64_t M, int64_t N, typename E::storage* out, Add add) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const float rs = row_stats[m];
    for (int64_t n = 0; n < N; ++n) {
      float v = float(C[m * N + n]) * rs * col_stats[n] * kInv127Sq;
      if (bias) v += E::load(bias, n);
      add(m, n, v);
      E::store(out, m * N + n, v);
    }
  }
}

}  // namespace

void int8_vectorwise_quant(DType dtype, const void* A, int64_t rows, int64_t cols, float threshold,
                           int8_t* out, float* row_stats, bool* outlier_cols, int32_t* outlier_list) {
  const bool find = threshold > 0.f && outlier_cols != nullptr;
  if (outlier_cols) std::fill(outlier_cols, outlier_cols + cols, false);
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    const auto* a = static_cast<const typename E::storage*>(A);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t base = r * cols;
      float amax = 0.f;
      bool nan_seen = false;  // std::max passes NaN over; a NaN row's absmax is NaN (bnb/nonfinite.h),
      int infs = 0;           // as is that of a row holding two or more Infs
      for (int64_t c = 0; c < cols; ++c) {
        const float v = std::fabs(E::load(a, base + c));
        if (regular(v, threshold)) amax = std::max(amax, v), nan_seen |= v != v, infs += v > FLT_MAX;
        else if (find) outlier_cols[c] = true;  // benign race: every writer stores true
      }
      if (nan_seen || infs > 1) amax = NAN;
      row_stats[r] = amax;
      const float scale = scale_of(amax);
      for (int64_t c = 0; c < cols; ++c) {
        const float v = E::load(a, base + c);
        out[base + c] = regular(std::fabs(v), threshold) ? round_to_int8(v, scale) : int8_t(0);
      }
    }
  });
  if (find) {
    // The whole column of an outlier goes through the 16-bit product, so none of it may stay here.
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        if (outlier_cols[c]) out[r * cols + c] = 0;
  }
  if (outlier_list) int8_outlier_list(outlier_cols, cols, outlier_list);  // a count of 0 without outliers
}

void int8_colwise_quant(DType dtype, const void* A, int64_t rows, int64_t cols, float threshold,
                        const bool* outlier_cols, int8_t* out, float* col_stats) {
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    const auto* a = static_cast<const typename E::storage*>(A);
    std::fill(col_stats, col_stats + cols, 0.f);
    // Row-major data: walk rows, keep one running max per column (threads own column ranges).
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < cols; c0 += 256) {
      const int64_t c1 = std::min(cols, c0 + 256);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = c0; c < c1; ++c) {
          const float v = std::fabs(E::load(a, r * cols + c));
          if (regular(v, threshold)) col_stats[c] = int8_absmax_merge(col_stats[c], v);
        }
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        const float v = E::load(a, r * cols + c);
        const bool zero = (outlier_cols && outlier_cols[c]) || !regular(std::fabs(v), threshold);
        out[r * cols + c] = zero ? int8_t(0) : round_to_int8(v, scale_of(col_stats[c]));
      }
  });
}

void int8_vectorwise_dequant(const int8_t* A, const float* stats, int64_t rows, int64_t cols, float* out) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float s = stats[r] * kInv127;
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = float(A[r * cols + c]) * s;
  }
}

namespace {

// int8 dot product accumulated in int32; written so the compiler vectorises it
// (sign-extend to 16 bits, multiply-add pairs into 32 bits).
inline int32_t dot_i8(const int8_t* __restrict a, const int8_t* __restrict b, int64_t k) {
  int32_t acc = 0;
  for (int64_t i = 0; i < k; ++i) acc += int32_t(int16_t(a[i]) * int16_t(b[i]));
  return acc;
}

}  // namespace

void int8_linear_matmul(const int8_t* A, const int8_t* B, int32_t* C, int64_t M, int64_t N, int64_t K) {
  // Tiles of 16 rows of A x 64 rows of B keep both in L1/L2 while every pair is formed.
  constexpr int64_t kTm = 16, kTn = 64;
  const int64_t tm = (M + kTm - 1) / kTm, tn = (N + kTn - 1) / kTn;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t t = 0; t < tm * tn; ++t) {
    const int64_t m0 = (t / tn) * kTm, n0 = (t % tn) * kTn;
    const int64_t m1 = std::min(M, m0 + kTm), n1 = std::min(N, n0 + kTn);
    for (int64_t m = m0; m < m1; ++m)
      for (int64_t n = n0; n < n1; ++n) C[m * N + n] = dot_i8(A + m * K, B + n * K, K);
  }
}

void int8_mm_dequant(DType dtype, const int32_t* C, const float* row_stats, const float* col_stats,
                     const void* bias, const void* sub_A, const void* sub_B, int64_t sub_k, int64_t M,
                     int64_t N, void* out) {
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    using S = typename E::storage;
    const auto* b = static_cast<const S*>(bias);
    const auto* sa = static_cast<const S*>(sub_A);
    const auto* sb = static_cast<const S*>(sub_B);
    dequant_rows<E>(C, row_stats, col_stats, b, M, N, static_cast<S*>(out), [&](int64_t m, int64_t n, float& v) {
      if (sa)
        for (int64_t j = 0; j < sub_k; ++j) v += E::load(sa, m * sub_k + j) * E::load(sb, n * sub_k + j);
    });
  });
}

void int8_outlier_list(const bool* outlier_cols, int64_t cols, int32_t* list) {
  int32_t n = 0;
  for (int64_t c = 0; c < cols; ++c)
    if (outlier_cols[c]) list[1 + n++] = int32_t(c);
  list[0] = n;
  std::fill(list + 1 + n, list + 1 + cols, 0);
}

void int8_mm_dequant_outliers(DType dtype, const int32_t* C, const float* row_stats, const float* col_stats,
                              const void* bias, const void* X, const void* W, bool w_int8, const int32_t* list,
                              int64_t M, int64_t N, int64_t K, void* out) {
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    using S = typename E::storage;
    const auto round = [](float v) {  // v rounded to the dtype
      S s[1];
      E::store(s, 0, v);
      return E::load(s, 0);
    };
    const int64_t count = list[0];
    const int32_t* cols = list + 1;
    // The outlier weight columns, [count, N], in the dtype's precision.
    std::vector<float> w(size_t(count * N));
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      const float s = w_int8 ? round(round(col_stats[n]) / 127.0f) : 0.f;
      for (int64_t j = 0; j < count; ++j) {
        const int64_t i = n * K + cols[j];
        w[size_t(j * N + n)] = w_int8 ? round(float(static_cast<const int8_t*>(W)[i]) * s)
                                      : E::load(static_cast<const S*>(W), i);
      }
    }
    const auto* b = static_cast<const S*>(bias);
    const auto* x = static_cast<const S*>(X);
    dequant_rows<E>(C, row_stats, col_stats, b, M, N, static_cast<S*>(out), [&](int64_t m, int64_t n, float& v) {
      for (int64_t j = 0; j < count; ++j) v += E::load(x, m * K + cols[j]) * w[size_t(j * N + n)];
    });
  });
}

void int8_weight_linear(DType dtype, const void* A, const int8_t* CB, const float* SCB, const void* bias,
                        int64_t M, int64_t N, int64_t K, void* out) {
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    using S = typename E::storage;
    const auto* a = static_cast<const S*>(A);
    const auto* b = static_cast<const S*>(bias);
    auto* o = static_cast<S*>(out);
    std::vector<float> af(size_t(M * K));  // activations widened once, reused by every weight row
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < M * K; ++i) af[size_t(i)] = E::load(a, i);
#pragma omp parallel
    {
      std::vector<float> w(static_cast<size_t>(K));
#pragma omp for schedule(static)
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t k = 0; k < K; ++k) w[size_t(k)] = float(CB[n * K + k]);
        const float s = SCB[n] * kInv127;
        for (int64_t m = 0; m < M; ++m) {
          const float* x = af.data() + m * K;
          const float* wr = w.data();
          float acc = 0.f;
#pragma omp simd reduction(+ : acc)
          for (int64_t k = 0; k < K; ++k) acc += x[k] * wr[k];
          float v = acc * s;
          if (b) v += E::load(b, n);
          E::store(o, m * N + n, v);
        }
      }
    }
  });
}

}  // namespace bnb::cpu
