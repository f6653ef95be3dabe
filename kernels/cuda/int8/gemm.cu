// int8 x int8 -> int32 GEMM, C[M, N] = A[M, K] x B[N, K]^T, all row-major.
//
// cuBLASLt's int8 tensor-core kernels do the work where they accept the shape. They are
// column-major and want A transposed and B not ("TN"): our row-major C[M, N] is the
// column-major C^T[N, M] = B[N, K] (column-major K x N, transposed) x A^T (column-major
// K x M), which is exactly that form. Shapes they refuse (K or N not a multiple of 4,
// unaligned pointers, no algorithm) go to a tiled kernel of ours instead of failing.
// A CUDA toolkit without the cuBLAS headers (a minimal install) still builds: the tiled
// kernel then serves every shape.
#if __has_include(<cublasLt.h>)
#include <cublasLt.h>
#define BNB_HAVE_CUBLASLT 1
#else
#define BNB_HAVE_CUBLASLT 0
#pragma message("cublasLt.h not found: int8_linear_matmul is built without cuBLASLt (tiled kernel only, slow)")
#endif

#include <map>
#include <mutex>
#include <tuple>

#include "bnb/int8_cuda.h"
#include "../common/device_caps.cuh"

namespace bnb::cuda {

namespace {

// ---- fallback: tiled int8 GEMM with int32 accumulation --------------------------------
constexpr int kTileM = 64, kTileN = 64, kTileK = 32, kGemmThreads = 256;

__global__ void __launch_bounds__(kGemmThreads)
int8_gemm_tiled_kernel(const int8_t* __restrict__ A, const int8_t* __restrict__ B, int32_t* __restrict__ C,
                       int64_t M, int64_t N, int64_t K) {
  // +4 bytes per row: rows of the tiles start in different banks.
  __shared__ int8_t As[kTileM][kTileK + 4];
  __shared__ int8_t Bs[kTileN][kTileK + 4];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m_tiles = (M + kTileM - 1) / kTileM;
  for (int64_t mt = blockIdx.y; mt < m_tiles; mt += gridDim.y) {
    const int64_t m0 = mt * kTileM, n0 = int64_t(blockIdx.x) * kTileN;
    int32_t acc[4][4] = {};
    for (int64_t k0 = 0; k0 < K; k0 += kTileK) {
      for (int i = threadIdx.x; i < kTileM * kTileK; i += kGemmThreads) {
        const int r = i / kTileK, k = i % kTileK;
        const int64_t gk = k0 + k;
        As[r][k] = (m0 + r < M && gk < K) ? A[(m0 + r) * K + gk] : int8_t(0);
        Bs[r][k] = (n0 + r < N && gk < K) ? B[(n0 + r) * K + gk] : int8_t(0);
      }
      __syncthreads();
#pragma unroll 8
      for (int k = 0; k < kTileK; ++k) {
        int32_t a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) a[i] = As[ty * 4 + i][k];
#pragma unroll
        for (int j = 0; j < 4; ++j) b[j] = Bs[tx * 4 + j][k];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int64_t m = m0 + ty * 4 + i;
      if (m >= M) continue;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t n = n0 + tx * 4 + j;
        if (n < N) C[m * N + n] = acc[i][j];
      }
    }
  }
}

// ---- cuBLASLt ------------------------------------------------------------------------
#if BNB_HAVE_CUBLASLT
cublasLtHandle_t lt_handle(int device) {
  static std::mutex mutex;
  static cublasLtHandle_t handles[kMaxDevices] = {};
  std::lock_guard<std::mutex> lock(mutex);
  if (!handles[device] && cublasLtCreate(&handles[device]) != CUBLAS_STATUS_SUCCESS) handles[device] = nullptr;
  return handles[device];
}

// Everything a shape needs, built once: the descriptors and the heuristic's algorithm.
// Creating and destroying the four descriptors at each call cost the host more than a small
// GEMM takes on the device. They are kept for the life of the process (one set per shape).
struct Plan {
  bool ok = false;
  cublasLtMatmulAlgo_t algo{};
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
};

// Runs C = A x B^T through cuBLASLt; false when it does not take this shape.
bool gemm_cublaslt(const int8_t* A, const int8_t* B, int32_t* C, int64_t M, int64_t N, int64_t K, void* workspace,
                   size_t workspace_bytes, cudaStream_t stream) {
  auto aligned = [](const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; };
  if (K % 4 != 0 || N % 4 != 0 || !aligned(A) || !aligned(B) || !aligned(C)) return false;
  const int device = device_caps().device;  // -1: no usable device
  if (device < 0) return false;
  cublasLtHandle_t handle = lt_handle(device);
  if (!handle) return false;

  static std::mutex mutex;
  static std::map<std::tuple<int, int64_t, int64_t, int64_t, size_t>, Plan> plans;
  Plan plan;
  const auto key = std::make_tuple(device, M, N, K, workspace_bytes);
  {
    std::lock_guard<std::mutex> lock(mutex);
    auto it = plans.find(key);
    if (it != plans.end()) {
      plan = it->second;
    } else {
      const cublasOperation_t trans = CUBLAS_OP_T;
      if (cublasLtMatmulDescCreate(&plan.op, CUBLAS_COMPUTE_32I, CUDA_R_32I) == CUBLAS_STATUS_SUCCESS &&
          cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &trans, sizeof(trans)) ==
              CUBLAS_STATUS_SUCCESS &&
          cublasLtMatrixLayoutCreate(&plan.la, CUDA_R_8I, uint64_t(K), uint64_t(N), K) == CUBLAS_STATUS_SUCCESS &&
          cublasLtMatrixLayoutCreate(&plan.lb, CUDA_R_8I, uint64_t(K), uint64_t(M), K) == CUBLAS_STATUS_SUCCESS &&
          cublasLtMatrixLayoutCreate(&plan.lc, CUDA_R_32I, uint64_t(N), uint64_t(M), N) == CUBLAS_STATUS_SUCCESS) {
        cublasLtMatmulPreference_t pref = nullptr;
        cublasLtMatmulHeuristicResult_t result{};
        int found = 0;
        if (cublasLtMatmulPreferenceCreate(&pref) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes,
                                                 sizeof(workspace_bytes)) == CUBLAS_STATUS_SUCCESS &&
            cublasLtMatmulAlgoGetHeuristic(handle, plan.op, plan.la, plan.lb, plan.lc, plan.lc, pref, 1, &result,
                                           &found) == CUBLAS_STATUS_SUCCESS &&
            found > 0) {
          plan.ok = true;
          plan.algo = result.algo;
        }
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
      }
      plans.emplace(key, plan);  // a shape without an algorithm is remembered too (fallback kernel)
    }
  }
  if (!plan.ok) return false;
  const int32_t alpha = 1, beta = 0;
  return cublasLtMatmul(handle, plan.op, &alpha, B, plan.la, A, plan.lb, &beta, C, plan.lc, C, plan.lc, &plan.algo,
                        workspace, workspace_bytes, stream) == CUBLAS_STATUS_SUCCESS;
}
#else
bool gemm_cublaslt(const int8_t*, const int8_t*, int32_t*, int64_t, int64_t, int64_t, void*, size_t, cudaStream_t) {
  return false;
}
#endif

}  // namespace

cudaError_t int8_linear_matmul_fallback(const int8_t* A, const int8_t* B, int32_t* C, int64_t M, int64_t N,
                                        int64_t K, cudaStream_t stream) {
  if (M == 0 || N == 0) return cudaSuccess;
  if (K == 0) return cudaMemsetAsync(C, 0, size_t(M * N) * sizeof(int32_t), stream);
  const int64_t n_tiles = (N + kTileN - 1) / kTileN, m_tiles = (M + kTileM - 1) / kTileM;
  if (n_tiles > 0x7fffffff) return cudaErrorInvalidValue;
  const dim3 grid(unsigned(n_tiles), unsigned(m_tiles < 65535 ? m_tiles : 65535));
  int8_gemm_tiled_kernel<<<grid, kGemmThreads, 0, stream>>>(A, B, C, M, N, K);
  return cudaGetLastError();
}

cudaError_t int8_linear_matmul(const int8_t* A, const int8_t* B, int32_t* C, int64_t M, int64_t N, int64_t K,
                               void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (M == 0 || N == 0) return cudaSuccess;
  if (K == 0) return cudaMemsetAsync(C, 0, size_t(M * N) * sizeof(int32_t), stream);
  if (gemm_cublaslt(A, B, C, M, N, K, workspace, workspace_bytes, stream)) return cudaGetLastError();
  return int8_linear_matmul_fallback(A, B, C, M, N, K, stream);
}

}  // namespace bnb::cuda
