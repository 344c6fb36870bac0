// The tensor-core split decode kernel over the bf16 segments (sink, then the recent ring), for
// DecodeKernel::kTensorCores (launched by decode_mma.cu): the bf16 baseline and the full-precision part of a
// mixed cache on the same code path as the INT2 kernel (decode_mma_kernel.cuh). Same grid, partials, online
// softmax and block combination (decode_mma_common.cuh).
//
// Scores, mma.sync m16n8k16 bf16: A = the query as three bfloat16 parts (q ≈ hi + mid + lo, 24 significant
// bits) [16 heads × 16 dims], B = key rows [16 dims × 8 tokens]: a B register is one 32-bit word of a row (two
// dims) as stored. Lane r reads 16-byte units r, r+4, … of its tokens' rows (a warp's load instruction then
// reads whole sectors); the query fragments take the dims in the same order. Values, the same MMA: A = value
// rows transposed [16 dims × 16 tokens] (lane g reads units g, g+8, … of its tokens' rows, and m-tile t's rows
// g and g+8 are the two halves of its word t), B = the weights as two bfloat16 parts, straight from the
// scores' accumulator.
//
// Compiled for the host too, against tests/runtime_cuda/cuda_emulation.h (see decode_mma_kernel.cuh).
#pragma once

#include <cstdint>

#include "runtime/cuda/decode_mma_common.cuh"
#include "runtime/cuda/decode_mma_layout.cuh"
#include "runtime/cuda/kernels.h"

namespace oscar::runtime::gpu::detail::mma_decode {
OSCAR_HOST_EMULATION_BEGIN

template <int D>
struct Bf16Layout {
  static constexpr int kSlices = D / 16;      ///< score k-slices of 16 dims
  static constexpr int kKeyWords = D / 8;     ///< words of a key row a lane reads: 16-byte units r, r+4, …
  static constexpr int kValueWords = D / 16;  ///< words of a value row a lane reads: 16-byte units g, g+8, …
  static constexpr int kTiles = D / 16;       ///< value m-tiles of 16 dims
  /// Row word of B register j of slice s in lane r (its two dims, low half first): the lane's word 2s + j.
  __device__ static int key_word(int r, int s, int j) {
    const int w = 2 * s + j;
    return 16 * (w / 4) + 4 * r + w % 4;
  }
  /// Dim of row `row` (0…15) of value m-tile t: half row / 8 of lane (row % 8)'s word t.
  __device__ static int dim(int t, int row) { return 2 * (32 * (t / 4) + 4 * (row % 8) + t % 4) + row / 8; }
};

template <int D>
struct Bf16Shared {
  std::uint32_t q_fragment[D / 16][3][2][32];  // [slice][part][register][lane]
  WarpCombine<D> combine;
};

/// bfloat16 bits of a finite float, rounded to nearest even.
__device__ __forceinline__ std::uint32_t bf16_bits(float x) {
  const std::uint32_t bits = bit_cast<std::uint32_t>(x);
  return (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
}

/// Two floats (low, high) as kParts bf16x2 words whose sum is the pair to 8·kParts significant bits.
template <int kParts>
__device__ __forceinline__ void split_bf16x2(float low, float high, std::uint32_t (&parts)[kParts]) {
#pragma unroll
  for (int k = 0; k < kParts; ++k) {
    const std::uint32_t l = bf16_bits(low), h = bf16_bits(high);
    parts[k] = l | h << 16;
    low -= bit_cast<float>(l << 16);
    high -= bit_cast<float>(h << 16);
  }
}


/// One block's split `split` (≥ p.int2_splits: the bf16 splits follow the INT2 ones) of KV head h for the query
/// heads of block.
template <int D>
__device__ void bf16_split(const DecodeLaunch& p, int split, int h, BlockHeads block, Bf16Shared<D>& sh) {
  using L = Bf16Layout<D>;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, r = lane & 3;
  const int heads = block.count;
  const int hq0 = h * p.group_heads + block.base;

  // Every lane's query fragments (head g; rows past `heads` zero), the warps taking every fourth slice.
  wait_for_previous_kernel();  // the rotated query
  const float* q = p.q + std::int64_t(hq0 + g) * D;
  for (int s = warp; s < L::kSlices; s += kDecodeWarps) {
    for (int j = 0; j < 2; ++j) {
      const int word = L::key_word(r, s, j);
      std::uint32_t parts[3];
      split_bf16x2(g < heads ? q[2 * word] : 0.0f, g < heads ? q[2 * word + 1] : 0.0f, parts);
      for (int k = 0; k < 3; ++k) sh.q_fragment[s][k][j][lane] = parts[k];
    }
  }
  __syncthreads();

  const std::int64_t begin = std::int64_t(split - p.int2_splits) * p.fp_chunk;
  const std::int64_t end = min(p.sink_tokens + p.recent_tokens, begin + p.fp_chunk);
  float m = kNegInf, l = 0.0f;
  float acc[L::kTiles][4];
#pragma unroll
  for (int t = 0; t < L::kTiles; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;

  for (std::int64_t t0 = begin + mma::kTileTokens * warp; t0 < end; t0 += mma::kTileTokens * kDecodeWarps) {
    // Tokens past the end read token t0's rows (their weight is 0).
    auto token = [&](int x) { return t0 + x < end ? t0 + x : t0; };
    std::uint32_t key_words[2][L::kKeyWords], value_words[4][L::kValueWords];
#pragma unroll
    for (int n = 0; n < 2; ++n) {
      decode::load_words(decode::bf16_row<D>(p, p.sink_k, p.ring_k, token(8 * n + g), h), r, 4, key_words[n]);
    }
    bool valid[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int x = mma::lane_token(r, i);
      valid[i] = t0 + x < end;
      decode::load_words(decode::bf16_row<D>(p, p.sink_v, p.ring_v, token(x), h), g, 8, value_words[i]);
    }

    float dot[2][4] = {};
#pragma unroll
    for (int s = 0; s < L::kSlices; ++s) {
#pragma unroll
      for (int k = 0; k < 3; ++k) {
        const std::uint32_t a[4] = {sh.q_fragment[s][k][0][lane], 0u, sh.q_fragment[s][k][1][lane], 0u};
#pragma unroll
        for (int n = 0; n < 2; ++n) mma_bf16(dot[n], a, key_words[n][2 * s], key_words[n][2 * s + 1]);
      }
    }
    float score[4], weight[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) score[i] = valid[i] ? dot[i / 2][i % 2] * p.score_scale_log2 : kNegInf;
    const float alpha = softmax_step(score, m, l, weight);
    rescale_columns(acc, alpha, r, 1.0f);

    // The weights (≤ 1) in two parts: 16 bits, ~1e-6 of the output (three parts for the query: its products
    // are summed over d before they are weighed).
    std::uint32_t first[2], second[2];  // tokens 2r, 2r+1 and 2r+8, 2r+9 of head g
    split_bf16x2(weight[0], weight[1], first);
    split_bf16x2(weight[2], weight[3], second);
#pragma unroll
    for (int t = 0; t < L::kTiles; ++t) {
      const std::uint32_t a[4] = {mma::byte_perm(value_words[0][t], value_words[1][t], 0x5410),
                                  mma::byte_perm(value_words[0][t], value_words[1][t], 0x7632),
                                  mma::byte_perm(value_words[2][t], value_words[3][t], 0x5410),
                                  mma::byte_perm(value_words[2][t], value_words[3][t], 0x7632)};
#pragma unroll
      for (int k = 0; k < 2; ++k) mma_bf16(acc[t], a, first[k], second[k]);
    }
  }

  combine_and_write<D, L::kTiles>(
      p, sh.combine, split, hq0, heads, m, l, [&](int t, int c, int, int) { return acc[t][c]; },
      [](int t, int row) { return L::dim(t, row); });
}

/// A bf16-only decode (no INT2 tokens: the bf16 baseline, short contexts). Grid: (fp_splits, Hkv, head launches).
template <int D>
__global__ void __launch_bounds__(kThreads) decode_bf16_mma_kernel(DecodeLaunch p) {
  __shared__ __align__(16) Bf16Shared<D> sh;
  allow_next_kernel();
  bf16_split<D>(p, p.int2_splits + int(blockIdx.x), int(blockIdx.y), block_heads(p), sh);
}

OSCAR_HOST_EMULATION_END
}  // namespace oscar::runtime::gpu::detail::mma_decode
