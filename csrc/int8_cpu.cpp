// CPU registration of the LLM.int8() ops.
#include <torch/library.h>

#include "bnb/int8_cpu.h"
#include "int8_ops.h"

namespace {

struct CpuInt8Backend {
  static void vectorwise_quant(const at::Tensor&, bnb::DType dt, const void* A, int64_t rows, int64_t cols,
                               float threshold, int8_t* out, float* stats, bool* outliers) {
    bnb::cpu::int8_vectorwise_quant(dt, A, rows, cols, threshold, out, stats, outliers);
  }
  static void vectorwise_quant_list(const at::Tensor& like, bnb::DType dt, const void* A, int64_t rows, int64_t cols,
                                    float threshold, int8_t* out, float* stats, bool* flags, int32_t* list) {
    vectorwise_quant(like, dt, A, rows, cols, threshold, out, stats, flags);
    bnb::cpu::int8_outlier_list(flags, cols, list);  // no flags when threshold <= 0
  }
  static void mm_dequant_outliers(const at::Tensor&, bnb::DType dt, const int32_t* C, const float* rs, const float* cs,
                                  const void* bias, const void* X, const void* W, bool w_int8, const int32_t* list,
                                  int64_t M, int64_t N, int64_t K, void* out) {
    bnb::cpu::int8_mm_dequant_outliers(dt, C, rs, cs, bias, X, W, w_int8, list, M, N, K, out);
  }
  static void colwise_quant(const at::Tensor&, bnb::DType dt, const void* A, int64_t rows, int64_t cols,
                            float threshold, const bool* outliers, int8_t* out, float* stats) {
    bnb::cpu::int8_colwise_quant(dt, A, rows, cols, threshold, outliers, out, stats);
  }
  static void vectorwise_dequant(const at::Tensor&, const int8_t* A, const float* stats, int64_t rows, int64_t cols,
                                 float* out) {
    bnb::cpu::int8_vectorwise_dequant(A, stats, rows, cols, out);
  }
  static void linear_matmul(const at::Tensor&, const int8_t* A, const int8_t* B, int32_t* C, int64_t M, int64_t N,
                            int64_t K) {
    bnb::cpu::int8_linear_matmul(A, B, C, M, N, K);
  }
  static void mm_dequant(const at::Tensor&, bnb::DType dt, const int32_t* C, const float* rs, const float* cs,
                         const void* bias, const void* sub_A, const void* sub_B, int64_t sub_k, int64_t M, int64_t N,
                         void* out) {
    bnb::cpu::int8_mm_dequant(dt, C, rs, cs, bias, sub_A, sub_B, sub_k, M, N, out);
  }
  static void weight_linear(const at::Tensor&, bnb::DType dt, const void* A, const int8_t* CB, const float* SCB,
                            const void* bias, int64_t M, int64_t N, int64_t K, void* out) {
    bnb::cpu::int8_weight_linear(dt, A, CB, SCB, bias, M, N, K, out);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(bitsandbytes, CPU, m) { BNB_REGISTER_INT8_OPS(m, CpuInt8Backend) }
