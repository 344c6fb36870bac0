// The tensor-core split decode kernel over the INT2 segment (DecodeKernel::kTensorCores; launched by
// decode_mma.cu). Same grid and same partials (m, l, acc in base 2) as the CUDA-core split kernel of decode.cu:
// either merge (decode_merge.cuh) combines them.
//
// Why: the CUDA-core kernel dequantises every element for every query head ((code − zero)·scale, then an FMA
// per head), which makes it instruction-bound at about 5 % of the H200's bandwidth. Here the format's algebra
// moves the scales out of the inner products:
//   q·k̂ = Σ_groups scale·(Σ_j q_j·code_j − zero·Σ_j q_j)       (keys, per token and group)
//   Σ_t p_t·v̂_t[j] = Σ_t (p_t·scale_t)·code_t[j] − Σ_t p_t·scale_t·zero_t   (values, per group)
// so the inner products are of raw codes: integer MMAs for the scores (the query as three exact 8-bit limbs,
// codes as int8 straight from the packed bytes) and half-precision MMAs for the values (codes 0…3 are exact
// halves; p·scale as a high and a low half, ~22 bits). Register layouts: decode_mma_layout.cuh.
//
// Block: 4 warps, one KV head, ≤ 8 query heads, one chunk of the INT2 segment; warps take 16-token tiles in
// turn and keep their own online softmax; the block combines them in shared memory like decode.cu.
//
// A header so that the tests can also compile it for the host against tests/runtime_cuda/cuda_emulation.h
// (every CUDA thread a std::thread, shuffles and mma.sync emulated as the PTX ISA defines them) and run the
// kernel's own code on a machine without a GPU.
#pragma once

#include <cstdint>
#include <cstring>

#include "runtime/cuda/decode_bf16_mma_kernel.cuh"
#include "runtime/cuda/decode_common.cuh"
#include "runtime/cuda/decode_mma_common.cuh"
#include "runtime/cuda/decode_mma_layout.cuh"
#include "runtime/cuda/kernels.h"

namespace oscar::runtime::gpu::detail::mma_decode {
OSCAR_HOST_EMULATION_BEGIN

using mma::KeyLayout;
using mma::ValueLayout;
using decode::int2_row;
using decode::load_scale;
using decode::warp_max;
using decode::warp_sum;

template <int D>
struct MmaShared {
  int q[kRows][D];                 // the queries as integers, largest magnitude 2^22
  float q_scale[kRows];            // q ≈ q_scale·Q
  int q_block_sum[kRows][D / 32];  // Σ Q over each 32-dim block (a group is 1, 2 or d/32 blocks)
  // Every lane's query fragments [slice][limb][register][lane] (in shared memory: registers bound occupancy).
  std::uint32_t q_fragment[KeyLayout<D>::kSlices][3][2][32];
  float wz[kDecodeWarps][kRows][D / 32];  // each warp's zero terms Σ p·scale·zero per head and value group
  WarpCombine<D> combine;
};

/// Two codes (low and high 16 bits) as a half2 of exact values 0…3: 0x6400 | c is the half 1024 + c.
__device__ __forceinline__ std::uint32_t codes_to_half2(std::uint32_t pair) {
  const __half2 magic = __halves2half2(__ushort_as_half(0x6400), __ushort_as_half(0x6400));
  const __half2 value = __hsub2(bit_cast<__half2>(pair | 0x64006400u), magic);
  return bit_cast<std::uint32_t>(value);
}

/// (x, y) as the high halves and the rounding remainders as the low halves: x ≈ hi + lo to ~22 bits.
__device__ __forceinline__ void split_half2(float x, float y, std::uint32_t& hi, std::uint32_t& lo) {
  const __half2 h = __floats2half2_rn(x, y);
  const __half2 l = __floats2half2_rn(x - __low2float(h), y - __high2float(h));
  hi = bit_cast<std::uint32_t>(h);
  lo = bit_cast<std::uint32_t>(l);
}

/// Rows of tile tokens t0 + x; tokens at or past `end` read token t0's row (their probability is 0).
struct TileRows {
  std::int64_t base = 0;
  bool contiguous = false;  // the tile lies in one page: its rows follow each other
  __device__ TileRows(const DecodeLaunch& p, std::int64_t t0, int h)
      : base(int2_row(p, t0, h)), contiguous(in_page(p, t0) + mma::kTileTokens <= p.page_tokens.divisor) {}
  __device__ static std::uint32_t in_page(const DecodeLaunch& p, std::int64_t t) {
    const std::uint32_t index = std::uint32_t(t);
    return p.page_tokens.remainder(index, p.page_tokens.quotient(index));
  }
  __device__ std::int64_t row(const DecodeLaunch& p, std::int64_t t0, int x, std::int64_t end, int h) const {
    if (t0 + x >= end) return base;
    return contiguous ? base + x : int2_row(p, t0 + x, h);
  }
};

/// The lane's words of a packed key row (KeyLayout<D>::loaded_word).
template <int D>
__device__ __forceinline__ void load_key_words(const std::uint8_t* row, int r,
                                               std::uint32_t (&w)[KeyLayout<D>::kLaneWords]) {
  const std::uint32_t* words = reinterpret_cast<const std::uint32_t*>(row);
  if constexpr (D == 64) {
    w[0] = words[r];
  } else {
#pragma unroll
    for (int i = 0; i < KeyLayout<D>::kLaneWords; i += 2) {
      const uint2 v = *reinterpret_cast<const uint2*>(words + KeyLayout<D>::loaded_word(r, i));
      w[i] = v.x;
      w[i + 1] = v.y;
    }
  }
}

/// The lane's bytes of a packed value row (ValueLayout<D>::byte), low bytes first.
template <int D>
__device__ __forceinline__ void load_value_words(const std::uint8_t* row, int g,
                                                 std::uint32_t (&w)[ValueLayout<D>::kWords]) {
  if constexpr (D == 64) {
    w[0] = reinterpret_cast<const std::uint16_t*>(row)[g];
  } else {
    const std::uint32_t* words = reinterpret_cast<const std::uint32_t*>(row);
#pragma unroll
    for (int i = 0; i < ValueLayout<D>::kWords; ++i) w[i] = words[8 * i + g];
  }
}

/// Queries of the launch's heads as integers in shared memory (rows ≥ heads are zero), their scales and sums
/// per 32-dim block. Warp w takes heads w, w+4.
template <int D>
__device__ void prepare_queries(const DecodeLaunch& p, int hq0, int heads, MmaShared<D>& sh) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  for (int hh = warp; hh < kRows; hh += kDecodeWarps) {
    const float* q = p.q + std::int64_t(hq0 + hh) * D;
    float largest = 0.0f;
    for (int e = lane; e < D; e += 32) largest = fmaxf(largest, hh < heads ? fabsf(q[e]) : 0.0f);
    largest = warp_max(largest);
    // Below 2^-100 the factor would overflow; such a query scores 0 against any stored key anyway.
    const float to_int = largest >= 0x1p-100f ? mma::kQueryMagnitude / largest : 0.0f;
    for (int b = 0; b < D / 32; ++b) {
      const int e = 32 * b + lane;
      const int value = hh < heads ? __float2int_rn(q[e] * to_int) : 0;
      sh.q[hh][e] = value;
      const int sum = warp_sum(value);
      if (lane == 0) sh.q_block_sum[hh][b] = sum;
    }
    if (lane == 0) sh.q_scale[hh] = to_int > 0.0f ? largest / mma::kQueryMagnitude : 0.0f;
  }
}

/// What a lane reads for one 16-token tile: key codes of tokens g and 8+g; value codes and both kinds' scales
/// and zeros of its tokens lane_token(r, 0…3).
template <int D, int NG>
struct TileLoad {
  std::uint32_t key_words[2][KeyLayout<D>::kLaneWords];
  std::uint32_t value_words[4][ValueLayout<D>::kWords];
  float key_scale[4][NG], key_zero[4][NG], value_scale[4][NG], value_zero[4][NG];
  bool valid[4];
};

template <int D, int NG>
__device__ __forceinline__ void load_tile(const DecodeLaunch& p, std::int64_t t0, std::int64_t end, int h, int g,
                                          int r, TileLoad<D, NG>& tile) {
  constexpr int NB = D / 4;
  const TileRows rows(p, t0, h);
#pragma unroll
  for (int n = 0; n < 2; ++n) load_key_words<D>(p.k_codes + rows.row(p, t0, 8 * n + g, end, h) * NB, r, tile.key_words[n]);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int x = mma::lane_token(r, i);
    tile.valid[i] = t0 + x < end;
    const std::int64_t row = rows.row(p, t0, x, end, h);
    load_value_words<D>(p.v_codes + row * NB, g, tile.value_words[i]);
#pragma unroll
    for (int gi = 0; gi < NG; ++gi) {
      tile.key_scale[i][gi] = load_scale(p.k_scales, row * NG + gi, p.k_float16);
      tile.key_zero[i][gi] = load_scale(p.k_zeros, row * NG + gi, p.k_float16);
      tile.value_scale[i][gi] = load_scale(p.v_scales, row * NG + gi, p.v_float16);
      tile.value_zero[i][gi] = load_scale(p.v_zeros, row * NG + gi, p.v_float16);
    }
  }
}

/// One block's INT2 split `split` (< p.int2_splits) of KV head h for the query heads of block.
template <int D, int NG>
__device__ void int2_split(const DecodeLaunch& p, int split, int h, BlockHeads block, MmaShared<D>& sh) {
  using KL = KeyLayout<D>;
  using VL = ValueLayout<D>;
  constexpr int kSlicesPerGroup = KL::kSlices / NG;
  constexpr int kBlocksPerGroup = (D / 32) / NG;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, r = lane & 3;
  const int heads = block.count;
  const int hq0 = h * p.group_heads + block.base;
  const std::int64_t begin = std::int64_t(split) * p.int2_chunk;
  const std::int64_t end = min(p.int2_tokens, begin + p.int2_chunk);

  // Each warp loads its next tile before working on the current one: two tiles of loads in flight per warp
  // (one tile's are not enough to cover the memory latency at the occupancy these registers allow). Not with
  // 4 or 8 groups, whose scales would not fit in the registers twice. The first tile's loads go out before the
  // query is ready: the cache was written before the decode began, only the rotated query is the previous
  // kernel's (wait_for_previous_kernel, dependent_launch.cuh).
  constexpr int kStride = mma::kTileTokens * kDecodeWarps;
  constexpr bool kPrefetch = NG <= 2;
  TileLoad<D, NG> tile;
  if constexpr (kPrefetch) {
    const std::int64_t first = begin + mma::kTileTokens * warp;
    if (first < end) load_tile(p, first, end, h, g, r, tile);
  }

  wait_for_previous_kernel();
  prepare_queries<D>(p, hq0, heads, sh);
  __syncthreads();

  // The lanes' query fragments (head g), and the lane's query sums per key group.
  for (int s = warp; s < KL::kSlices; s += kDecodeWarps) {  // the warps take every fourth slice
    for (int j = 0; j < 2; ++j) {
      std::uint32_t limbs[3];
      mma::query_fragments<D>(sh.q[g], s, r, j, limbs);
      for (int l = 0; l < 3; ++l) sh.q_fragment[s][l][j][lane] = limbs[l];
    }
  }
  __syncthreads();
  float q_group_sum[NG];
#pragma unroll
  for (int gi = 0; gi < NG; ++gi) {
    int sum = 0;
    for (int b = 0; b < kBlocksPerGroup; ++b) sum += sh.q_block_sum[g][gi * kBlocksPerGroup + b];
    q_group_sum[gi] = float(sum);
  }
  const float score_factor = sh.q_scale[g] * p.score_scale_log2;

  float m = kNegInf, l = 0.0f, value_factor = 1.0f;  // running max (base 2), lane's share of the sum, acc unit
  float acc[VL::kTiles][4];
  float zero_sum[NG];
#pragma unroll
  for (int t = 0; t < VL::kTiles; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;
#pragma unroll
  for (int gi = 0; gi < NG; ++gi) zero_sum[gi] = 0.0f;

  for (std::int64_t t0 = begin + mma::kTileTokens * warp; t0 < end; t0 += kStride) {
    TileLoad<D, NG> next;
    if (!kPrefetch) {
      load_tile(p, t0, end, h, g, r, tile);
    } else if (t0 + kStride < end) {
      load_tile(p, t0 + kStride, end, h, g, r, next);
    }
    const auto& kw = tile.key_words;
    const auto& vw = tile.value_words;
    const auto& ks = tile.key_scale;
    const auto& kz = tile.key_zero;
    const auto& vs = tile.value_scale;
    const auto& vz = tile.value_zero;
    const auto& valid = tile.valid;

    // Scores of head g for the lane's tokens, base 2.
    float score[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int gi = 0; gi < NG; ++gi) {
      int dot[3][2][4] = {};
#pragma unroll
      for (int s = gi * kSlicesPerGroup; s < (gi + 1) * kSlicesPerGroup; ++s) {
#pragma unroll
        for (int n = 0; n < 2; ++n) {
          const std::uint32_t b0 = KL::codes(kw[n], s, 0), b1 = KL::codes(kw[n], s, 1);
#pragma unroll
          for (int limb = 0; limb < 3; ++limb) {
            mma_s8(dot[limb][n], sh.q_fragment[s][limb][0][lane], sh.q_fragment[s][limb][1][lane], b0, b1);
          }
        }
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int n = i / 2, c = i % 2;
        const float qk = fmaf(float(dot[2][n][c]), 65536.0f, fmaf(float(dot[1][n][c]), 256.0f, float(dot[0][n][c])));
        score[i] = fmaf(ks[i][gi], qk - kz[i][gi] * q_group_sum[gi], score[i]);
      }
    }

    // Online softmax (head g; the quad's four lanes hold the tile's 16 tokens).
#pragma unroll
    for (int i = 0; i < 4; ++i) score[i] = valid[i] ? score[i] * score_factor : kNegInf;
    float pr[4];
    const float alpha = softmax_step(score, m, l, pr);

    // Values: P' = p·scale / (the tile's largest scale), so that P' ≤ 1 fits a half; acc is kept in units of
    // that largest scale (value_factor), rescaled with alpha at each tile.
    float largest_scale = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#pragma unroll
      for (int gi = 0; gi < NG; ++gi) largest_scale = fmaxf(largest_scale, vs[i][gi]);
    }
    largest_scale = quad_max(largest_scale);
    if (!(largest_scale > 0.0f)) largest_scale = 1.0f;
    rescale_columns(acc, alpha, r, value_factor / largest_scale);
    value_factor = largest_scale;
    const float inverse_scale = 1.0f / largest_scale;
    std::uint32_t p_hi[NG][2], p_lo[NG][2];
#pragma unroll
    for (int gi = 0; gi < NG; ++gi) {
      float z = 0.0f, x[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float weighted = pr[i] * vs[i][gi];
        z = fmaf(weighted, vz[i][gi], z);
        x[i] = weighted * inverse_scale;
      }
      zero_sum[gi] = fmaf(zero_sum[gi], alpha, z);
      split_half2(x[0], x[1], p_hi[gi][0], p_lo[gi][0]);
      split_half2(x[2], x[3], p_hi[gi][1], p_lo[gi][1]);
    }
#pragma unroll
    for (int pair = 0; pair < VL::kPairs; ++pair) {
      const std::uint32_t first = VL::pair_bytes(vw[0], vw[1], pair), second = VL::pair_bytes(vw[2], vw[3], pair);
#pragma unroll
      for (int quarter = 0; quarter < 4; ++quarter) {
        const int t = VL::tile(pair, quarter);
        const int gi = VL::group32(t) * NG / (D / 32);
        const std::uint32_t a[4] = {codes_to_half2(VL::code_pair(first, quarter, 0)),
                                    codes_to_half2(VL::code_pair(first, quarter, 1)),
                                    codes_to_half2(VL::code_pair(second, quarter, 0)),
                                    codes_to_half2(VL::code_pair(second, quarter, 1))};
        mma_f16(acc[t], a, p_hi[gi][0], p_hi[gi][1]);
        mma_f16(acc[t], a, p_lo[gi][0], p_lo[gi][1]);
      }
    }
    if (kPrefetch && t0 + kStride < end) tile = next;
  }

  // The warp's zero terms summed over the quad, then the block's partial.
#pragma unroll
  for (int gi = 0; gi < NG; ++gi) zero_sum[gi] = quad_sum(zero_sum[gi]);
  if (r == 0) {
#pragma unroll
    for (int gi = 0; gi < NG; ++gi) sh.wz[warp][g][gi] = zero_sum[gi];
  }
  combine_and_write<D, VL::kTiles>(
      p, sh.combine, split, hq0, heads, m, l,
      [&](int t, int c, int head, int dim) { return acc[t][c] * value_factor - sh.wz[warp][head][dim / (D / NG)]; },
      [](int t, int row) { return VL::dim(t, row); });
}

/// Either split kernel's shared memory (a block runs one of them).
template <int D>
union MixedShared {
  MmaShared<D> int2;
  Bf16Shared<D> bf16;
};

/// Blocks per SM the registers are held to (65536 / (128 threads · blocks) registers a thread): as many as fit
/// without spilling. Without a bound ptxas takes whatever helps its schedule, and one block fewer per SM is a
/// third less memory traffic in flight. Two groups prefetch two tiles of scales: one block fewer.
template <int D, int NG>
inline constexpr int kMixedBlocksPerSm = D == 64 ? (NG == 2 ? 3 : 4) : D == 128 ? (NG == 2 ? 2 : 3) : 2;

/// Every split of a mixed cache in one launch, grid (int2_splits + fp_splits, Hkv, head launches): blocks
/// x < int2_splits take the INT2 segment, the others the bf16 sink and window. One launch instead of two: the
/// short bf16 splits run beside the INT2 ones instead of after them, and one kernel boundary fewer per decode.
template <int D, int NG>
__global__ void __launch_bounds__(kThreads, kMixedBlocksPerSm<D, NG>) decode_mixed_mma_kernel(DecodeLaunch p) {
  __shared__ __align__(16) MixedShared<D> sh;
  allow_next_kernel();  // the merge may be scheduled; it waits for this grid's partials
  const int split = int(blockIdx.x), h = int(blockIdx.y);
  if (split < p.int2_splits) {
    int2_split<D, NG>(p, split, h, block_heads(p), sh.int2);
  } else {
    bf16_split<D>(p, split, h, block_heads(p), sh.bf16);
  }
}

OSCAR_HOST_EMULATION_END
}  // namespace oscar::runtime::gpu::detail::mma_decode
