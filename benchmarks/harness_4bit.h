// The data the 4-bit product harnesses (benchmarks/ab_4bit_*.cu) time their kernels on: random
// packed NF4 codes of an N x K weight with nested scales (blocks of 64, groups of 256 blocks),
// `copies` copies of both so that cycling over them reads the weights from memory (256 MiB at
// least; one copy where `cycle` is false: a correctness check), and random bf16 activations, all
// drawn from one seed.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <cuda_bf16.h>
#include "bnb/block_scales.h"
#include "bnb/codes_4bit.h"
#include "harness_common.h"

// The decode shapes the harnesses time: a square layer of a large model, a LLaMA MLP's up and
// down projections, and a square layer of a 7B one.
struct DecodeShape { const char* name; int64_t N, K; };
constexpr DecodeShape kDecodeShapes[] = {{"8192^2", 8192, 8192}, {"4096->11008", 11008, 4096},
                                         {"11008->4096", 4096, 11008}, {"4096^2", 4096, 4096}};

struct Weights4bit {
  int64_t N, K, nbytes, blocks, groups;
  int copies, tokens;
  uint8_t *w = nullptr, *q = nullptr;
  float *group_absmax = nullptr, *offset = nullptr, *nested_code = nullptr, *code = nullptr;
  __nv_bfloat16* A = nullptr;  // [tokens][K]

  Weights4bit(int64_t n, int64_t k, int max_tokens, unsigned seed, bool cycle = true)
      : N(n), K(k), nbytes(n * k / 2), blocks(n * k >> 6), groups((n * k / 64 + 255) / 256), tokens(max_tokens) {
    copies = cycle ? int(std::max<int64_t>(2, (int64_t(256) << 20) / nbytes)) : 1;
    srand(seed);
    std::vector<uint8_t> hw(nbytes), hq(blocks);
    for (auto& b : hw) b = rand() & 0xff;
    for (auto& c : hq) c = rand() % 255;  // (255: the code of a block that held NaN or Inf)
    std::vector<float> hna(groups);
    for (auto& a : hna) a = 0.5f + (rand() % 1000) / 1000.f;
    std::vector<__nv_bfloat16> hA(size_t(tokens) * K);
    for (auto& a : hA) a = __float2bfloat16((rand() % 2001 - 1000) / 1000.f);
    std::vector<float> ncode(256);
    for (int i = 0; i < 256; ++i) ncode[i] = (i - 127.5f) / 127.5f;
    const float hoff = 0.9f;
    CK(cudaMalloc(&w, nbytes * copies));
    CK(cudaMalloc(&q, blocks * copies));
    for (int c = 0; c < copies; ++c) {
      CK(cudaMemcpy(w + c * nbytes, hw.data(), nbytes, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(q + c * blocks, hq.data(), blocks, cudaMemcpyHostToDevice));
    }
    CK(cudaMalloc(&group_absmax, groups * 4));
    CK(cudaMemcpy(group_absmax, hna.data(), groups * 4, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&offset, 4));
    CK(cudaMemcpy(offset, &hoff, 4, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&nested_code, 1024));
    CK(cudaMemcpy(nested_code, ncode.data(), 1024, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&code, 64));
    CK(cudaMemcpy(code, bnb::kNF4Code, 64, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&A, hA.size() * 2));
    CK(cudaMemcpy(A, hA.data(), hA.size() * 2, cudaMemcpyHostToDevice));
  }
  Weights4bit(const Weights4bit&) = delete;
  Weights4bit& operator=(const Weights4bit&) = delete;
  ~Weights4bit() {
    cudaFree(w), cudaFree(q), cudaFree(group_absmax), cudaFree(offset), cudaFree(nested_code), cudaFree(code);
    cudaFree(A);
  }
  const uint8_t* weight(int c) const { return w + (c % copies) * nbytes; }
  bnb::BlockScales scales(int c) const {
    bnb::BlockScales s;
    s.nested = q + (c % copies) * blocks;
    s.nested_code = nested_code;
    s.nested_absmax = group_absmax;
    s.offset = offset;
    s.log2_nested_blocksize = 8;
    return s;
  }
  // The bytes a product must read: the codes and one nested code a block.
  double bytes() const { return double(nbytes + blocks); }
};

// Where `got` first differs from `want` by more than the rounding of a reordered float32 sum
// (|a - b| <= 2^-7 |b| + 2^-12 max|b|, the products' outputs in bf16), or -1 where nowhere.
inline int64_t first_far(const std::vector<__nv_bfloat16>& got, const std::vector<__nv_bfloat16>& want) {
  float most = 0.f;
  for (const __nv_bfloat16& r : want) most = std::max(most, std::fabs(__bfloat162float(r)));
  for (size_t i = 0; i < want.size(); ++i) {
    const float a = __bfloat162float(got[i]), b = __bfloat162float(want[i]);
    if (!(std::fabs(a - b) <= 0x1p-7f * std::fabs(b) + 0x1p-12f * most)) return int64_t(i);
  }
  return -1;
}
