// Tiles of whole quantization blocks for the block-wise quantize kernels (8-bit and 4-bit codes),
// apart from their code formats:
// how a tile splits into 16-byte chunks and blocks, the raw loads, each block's absmax and
// non-finite mark from one reduction of integer keys (abs_key.cuh), and the tile loop itself
// (quantize_block_tiles), to which each kernel hands its own codes and stores.
//
// A thread's chunk is one 16-byte access of the input (V = 4 floats or 8 halves); chunk c of a
// tile holds V * kThreads consecutive values, one chunk a thread, so every warp-wide access is
// contiguous. A block is one chunk of kGroup consecutive threads, or, for a block larger than a
// chunk of the CTA, whole chunks of all of it. The chunks stay raw (uint4) until their block's
// scale is known, so that four of them a thread are in flight for the registers of four.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "abs_key.cuh"
#include "quant.cuh"

namespace bnb::cuda {

// CTAs an SM that the tiled quantize kernels ask registers for (64 a thread at kThreads), so that
// one CTA loads while another computes.
constexpr int kTileCtasPerSM = 2;

// A quantize tile: kChunks chunks a thread. A block is kBlockChunks consecutive chunks (one, or
// whole chunks of the CTA for a block larger than a chunk) of kGroup consecutive threads.
template <typename T, int BLOCK> struct BlockTileShape {
  static constexpr int kVec = 16 / sizeof(T);         // values per 16-byte chunk
  static constexpr int kChunkSpan = kThreads * kVec;  // values of one chunk across the CTA
  static constexpr bool kBlockInChunk = BLOCK <= kChunkSpan;
  static constexpr int kGroup = kBlockInChunk ? BLOCK / kVec : kThreads;
  static constexpr int kBlockChunks = kBlockInChunk ? 1 : BLOCK / kChunkSpan;
  // 64 bytes of input in flight per thread, or one block if that is more.
  static constexpr int kChunks = kBlockChunks > 4 ? kBlockChunks : 4;
  static constexpr int kBlocksPerThread = kChunks / kBlockChunks;
  static constexpr int kTile = kChunks * kChunkSpan;
  static_assert(BLOCK % kVec == 0 && kGroup <= kThreads, "a block is whole chunks of one CTA");
  static_assert(kChunks % kBlockChunks == 0, "a tile is whole blocks");
};

// The chunk of 16 bytes at A + base, kept raw until its block's scale is known. Past the end of
// the input (or wherever the tile cannot be read whole and aligned) element by element, the
// values past n as +0.0 (which no block's absmax or mark sees).
template <typename T> __device__ __forceinline__ uint4 load_chunk(const T* A, int64_t base, int64_t n, bool full) {
  if (full) return __ldcs(reinterpret_cast<const uint4*>(A + base));  // streamed: read once
  using Bits = std::conditional_t<sizeof(T) == 2, uint16_t, uint32_t>;
  constexpr int V = 16 / sizeof(T);
  Bits e[V];
#pragma unroll
  for (int j = 0; j < V; ++j) e[j] = base + j < n ? reinterpret_cast<const Bits*>(A)[base + j] : Bits(0);
  uint4 raw;
  memcpy(&raw, e, 16);
  return raw;
}

// A thread's C chunks of a tile: chunk c at first + c * kChunkSpan.
template <typename T, int BLOCK, int C>
__device__ __forceinline__ void load_tile(const T* A, int64_t first, int64_t n, bool full, uint4 (&raw)[C]) {
  constexpr int kSpan = BlockTileShape<T, BLOCK>::kChunkSpan;
#pragma unroll
  for (int c = 0; c < C; ++c) raw[c] = load_chunk(A, first + int64_t(c) * kSpan, n, full);
}

// Asks the L2 for a thread's C chunks of its CTA's next tile (`first` is its chunk 0 there) while
// this tile is reduced and quantized, so that the next tile's loads find their lines in the L2
// rather than in memory. On an H200 (same run, one alternation) the 4-bit quantize gained 1-14
// points of the copy bandwidth on every dtype, type and blocksize; the 8-bit one moved -2..+3.
template <typename T, int BLOCK, int C>
__device__ __forceinline__ void prefetch_tile_l2(const T* A, int64_t first, int64_t n) {
  constexpr int kSpan = BlockTileShape<T, BLOCK>::kChunkSpan;
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int64_t base = first + int64_t(c) * kSpan;
    if (base < n) asm volatile("prefetch.global.L2 [%0];" ::"l"(A + base));
  }
}

template <typename T, int V> __device__ __forceinline__ void chunk_values(const uint4& raw, float (&v)[V]) {
  static_assert(V * sizeof(T) == 16, "one chunk");
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {  // (quant.cuh: a shift or a mask a value)
    const unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const float2 f = word_to_float2(w[i], T());
      v[2 * i] = f.x, v[2 * i + 1] = f.y;
    }
  } else {
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < V; ++j) v[j] = to_float(e[j]);
  }
}

// Words in each half of a kernel's `s_warp` (2 * kKeyHalf words), shared by both reductions
// below: the first reduces NB / 2 words a warp for 16-bit input, the second NB, and with halves
// sized by the call a block_keys of parity 1 would overlap the finite_block_keys of parity 0
// that follows it.
template <int NB> constexpr int kKeyHalf = NB * kThreads / 32;

// The float32 absmax keys (abs_key.cuh) of a thread's NB blocks of K chunks each, reduced over
// each block's group of G threads. Returns whether some block in the reduction's scope (warp or
// CTA, the same answer for all its threads) holds a non-finite value.
template <typename T, int K, int G, int NB>
__device__ __forceinline__ bool block_keys(const uint4 (&raw)[NB * K], unsigned (&key)[NB], unsigned* s_warp,
                                           int& parity) {
  using Keys = AbsKeys<T>;
  constexpr int P = Keys::kPerWord, W = (NB + P - 1) / P;
  unsigned w[W] = {};
#pragma unroll
  for (int b = 0; b < NB; ++b) {
    unsigned m = 0;
#pragma unroll
    for (int k = 0; k < K; ++k) m = max(m, Keys::of_chunk(raw[b * K + k]));
    w[b / P] |= m << (32 / P * (b % P));
  }
  const bool any = group_max_keys<G, Keys, kKeyHalf<NB>>(w, s_warp, parity);
#pragma unroll
  for (int b = 0; b < NB; ++b) key[b] = Keys::to_float_key(P == 1 ? w[b] : (w[b / P] >> (16 * (b % P))) & 0xffffu);
  return any;
}

// The keys of the largest finite |x| of the same blocks: the second reduction, for blocks that
// hold a non-finite value.
template <typename T, int K, int G, int NB>
__device__ __forceinline__ void finite_block_keys(const uint4 (&raw)[NB * K], unsigned (&key)[NB], unsigned* s_warp,
                                                  int& parity) {
  constexpr int V = 16 / sizeof(T);
#pragma unroll
  for (int b = 0; b < NB; ++b) {
    key[b] = 0;
#pragma unroll
    for (int k = 0; k < K; ++k) {
      float v[V];
      chunk_values<T>(raw[b * K + k], v);
#pragma unroll
      for (int j = 0; j < V; ++j) key[b] = max(key[b], finite_abs_key(v[j]));
    }
  }
  group_max_keys<G, AbsKeys<float>, kKeyHalf<NB>>(key, s_warp, parity);
}

// Each of a thread's NB blocks' finite absmax and whether it holds a non-finite value (is
// marked, bnb/nonfinite.h): one reduction, and a second only where the first's scope holds a
// non-finite value. Every thread of the CTA calls it; `s_warp` holds 2 * kKeyHalf<NB> words.
template <typename T, int K, int G, int NB>
__device__ __forceinline__ void tile_block_absmax(const uint4 (&raw)[NB * K], float (&amax)[NB], bool (&marked)[NB],
                                             unsigned* s_warp, int& parity) {
  unsigned key[NB];
  const bool any_nonfinite = block_keys<T, K, G>(raw, key, s_warp, parity);
#pragma unroll
  for (int b = 0; b < NB; ++b) marked[b] = key[b] >= kInfKey;
  if (any_nonfinite) {  // rare; taken alike by every thread of the reduction's scope
    unsigned finite[NB];
    finite_block_keys<T, K, G>(raw, finite, s_warp, parity);
#pragma unroll
    for (int b = 0; b < NB; ++b) key[b] = marked[b] ? finite[b] : key[b];
  }
#pragma unroll
  for (int b = 0; b < NB; ++b) amax[b] = __uint_as_float(key[b]);
}

// The persistent loop of a block-wise quantize kernel over its tiles (every thread of the CTA
// calls it): a thread's chunks loaded raw, the L2 asked for its next tile, each block's absmax
// and mark found and stored by the block's first thread (a marked block's negated), then each
// chunk's values handed on: scale_of(amax) once a block, and codes(v, scale, amax, marked,
// base, full) a chunk, with base the index of its first value and full whether the tile is
// whole and aligned (vector stores; otherwise the chunk may run past n). `out_aligned`: the
// codes' output allows the vector stores.
template <typename T, int BLOCK, class ScaleOf, class ChunkCodes>
__device__ __forceinline__ void quantize_block_tiles(const T* __restrict__ A, bool out_aligned,
                                                     float* __restrict__ absmax, int64_t n, unsigned* s_warp,
                                                     ScaleOf&& scale_of, ChunkCodes&& codes) {
  using S = BlockTileShape<T, BLOCK>;
  constexpr int V = S::kVec, C = S::kChunks, K = S::kBlockChunks, G = S::kGroup, NB = S::kBlocksPerThread;
  int parity = 0;
  const bool vector_ok = aligned16(A) && out_aligned;
  const int64_t tiles = (n + S::kTile - 1) / S::kTile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t first = tile * S::kTile + int64_t(threadIdx.x) * V;  // this thread's chunk 0
    const bool full = vector_ok && (tile + 1) * S::kTile <= n;
    uint4 raw[C];
    load_tile<T, BLOCK>(A, first, n, full, raw);
    prefetch_tile_l2<T, BLOCK, C>(A, first + int64_t(gridDim.x) * S::kTile, n);
    // This thread's NB blocks: block b is chunks b * K .. b * K + K - 1.
    float amax[NB];  // the finite absmax
    bool marked[NB];
    tile_block_absmax<T, K, G>(raw, amax, marked, s_warp, parity);
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      const int64_t block_first = first + int64_t(b) * K * S::kChunkSpan;
      if (threadIdx.x % G == 0 && block_first < n) absmax[block_first / BLOCK] = marked[b] ? -amax[b] : amax[b];
      const auto scale = scale_of(amax[b]);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        float v[V];
        chunk_values<T>(raw[b * K + k], v);
        codes(v, scale, amax[b], marked[b], block_first + int64_t(k) * S::kChunkSpan, full);
      }
    }
  }
}

}  // namespace bnb::cuda
