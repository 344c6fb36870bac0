// What the tensor-core split decode kernels (INT2: decode_mma_kernel.cuh; bf16: decode_bf16_mma_kernel.cuh)
// share: the mma.sync wrappers, the warp's online softmax over a 16-token tile, and the block's combination
// of its warps into the partials (m, l, acc in base 2) that either merge (decode_merge.cuh) reads.
//
// A warp holds the scores of a tile as the score MMA's accumulator: lane 4g + r has head g's scores of tokens
// lane_token(r, 0…3), so a head's 16 scores sit in one quad. The value MMAs accumulate O^T [16 dims × 8 heads]
// per m-tile: element c of a lane's accumulator is head 2r + c%2 and the m-tile's row g + 8·(c/2).
//
// Compiled for the host too, against tests/runtime_cuda/cuda_emulation.h (see decode_mma_kernel.cuh).
#pragma once

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#endif

#include <cstdint>
#include <cstring>

#include "runtime/cuda/decode_common.cuh"
#include "runtime/cuda/decode_mma_layout.cuh"
#include "runtime/cuda/kernels.h"

namespace oscar::runtime::gpu::detail::mma_decode {
OSCAR_HOST_EMULATION_BEGIN

inline constexpr int kThreads = kDecodeThreads;
inline constexpr int kRows = mma::kRows;
using decode::kNegInf;
static_assert(mma::kRows == decode::kHeads, "the partials' layout assumes 8 query heads per launch");
inline constexpr unsigned kFullMask = 0xffffffffu;

/// The query heads a block of a tensor-core split kernel takes: heads base … base+count−1 of its KV head's group,
/// the launch's blockIdx.z-th run of ≤ 8 (grid.z = decode_head_launches(group_heads): one launch for any GQA).
struct BlockHeads {
  int base = 0, count = 0;
};
__device__ __forceinline__ BlockHeads block_heads(const DecodeLaunch& p) {
  const int base = int(blockIdx.z) * kRows;
  return {base, p.group_heads - base < kRows ? p.group_heads - base : kRows};
}

/// The block's per-warp maxima and sums and its combined accumulator (the partial's acc).
template <int D>
struct WarpCombine {
  float wm[kDecodeWarps][kRows];
  float wl[kDecodeWarps][kRows];
  float acc[kRows][D];
};

/// mma.sync m16n8k32 s8 → s32. Rows 8…15 of A (registers a1, a3) are zero: ≤ 8 query heads per launch.
__device__ __forceinline__ void mma_s8(int (&c)[4], std::uint32_t a0, std::uint32_t a2, std::uint32_t b0,
                                       std::uint32_t b1) {
#if defined(__CUDACC__)
  asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a0), "r"(0u), "r"(a2), "r"(0u), "r"(b0), "r"(b1));
#else
  cuda_emulation::mma_m16n8k32_s8(c, {a0, 0u, a2, 0u}, {b0, b1});
#endif
}

/// mma.sync m16n8k16 f16 → f32.
__device__ __forceinline__ void mma_f16(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                        std::uint32_t b1) {
#if defined(__CUDACC__)
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  cuda_emulation::mma_m16n8k16_f16(c, {a[0], a[1], a[2], a[3]}, {b0, b1});
#endif
}

/// mma.sync m16n8k16 bf16 → f32.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                         std::uint32_t b1) {
#if defined(__CUDACC__)
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  cuda_emulation::mma_m16n8k16_bf16(c, {a[0], a[1], a[2], a[3]}, {b0, b1});
#endif
}

/// The bits of `from` as a To (std::bit_cast is C++20).
template <class To, class From>
__device__ __forceinline__ To bit_cast(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast between types of different sizes");
  To to;
  memcpy(&to, &from, sizeof(To));
  return to;
}

__device__ __forceinline__ float quad_max(float v) {
  v = fmaxf(v, __shfl_xor_sync(kFullMask, v, 1));
  return fmaxf(v, __shfl_xor_sync(kFullMask, v, 2));
}
__device__ __forceinline__ float quad_sum(float v) {
  v += __shfl_xor_sync(kFullMask, v, 1);
  return v + __shfl_xor_sync(kFullMask, v, 2);
}

/// One online-softmax step of head g over the lane's tokens (scores in base 2, −inf past the segment's end):
/// updates the running max m and the lane's share l of the sum, writes the tokens' weights 2^(s − m) and returns
/// alpha = 2^(m_old − m_new), the factor for what was accumulated before (0 on the first tile).
__device__ __forceinline__ float softmax_step(const float (&score)[4], float& m, float& l, float (&weight)[4]) {
  float tile_max = kNegInf;
#pragma unroll
  for (int i = 0; i < 4; ++i) tile_max = fmaxf(tile_max, score[i]);
  const float m_new = fmaxf(m, quad_max(tile_max));  // finite: the tile's first token is valid
  const float alpha = exp2f(m - m_new);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    weight[i] = exp2f(score[i] - m_new);  // 0 for −inf
    l = fmaf(l, i == 0 ? alpha : 1.0f, weight[i]);
  }
  m = m_new;
  return alpha;
}

/// acc *= alpha of its column's head (heads 2r and 2r+1, held by lanes 8r and 8r+4) times `factor`.
template <int kTiles>
__device__ __forceinline__ void rescale_columns(float (&acc)[kTiles][4], float alpha, int r, float factor) {
  const float column0 = __shfl_sync(kFullMask, alpha, 8 * r) * factor;
  const float column1 = __shfl_sync(kFullMask, alpha, 8 * r + 4) * factor;
#pragma unroll
  for (int t = 0; t < kTiles; ++t) {
    acc[t][0] *= column0;
    acc[t][1] *= column1;
    acc[t][2] *= column0;
    acc[t][3] *= column1;
  }
}

/// The block's partial: each warp's (m, l) and accumulator combined in shared memory, then written for
/// split `split`. value(t, c, head, dim) is the warp's unnormalised output of accumulator element (t, c);
/// dim(t, row) the dim of an m-tile's row. All threads call it; m and l as softmax_step left them.
template <int D, int kTiles, class Value, class Dim>
__device__ void combine_and_write(const DecodeLaunch& p, WarpCombine<D>& sh, int split, int hq0, int heads, float m,
                                  float l, const Value& value, const Dim& dim) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, r = lane & 3;
  l = quad_sum(l);
  if (r == 0) {
    sh.wm[warp][g] = m;
    sh.wl[warp][g] = l;
  }
  for (int i = threadIdx.x; i < kRows * D; i += kThreads) (&sh.acc[0][0])[i] = 0.0f;
  __syncthreads();

  // This warp's weight 2^(m_w − M) for the lane's columns, heads 2r and 2r+1 (M: the block's max).
  float factor[2];
#pragma unroll
  for (int c = 0; c < 2; ++c) {
    const int head = 2 * r + c;
    float block_max = kNegInf;
    for (int v = 0; v < kDecodeWarps; ++v) block_max = fmaxf(block_max, sh.wm[v][head]);
    factor[c] = sh.wm[warp][head] == kNegInf ? 0.0f : exp2f(sh.wm[warp][head] - block_max);
  }
  for (int w = 0; w < kDecodeWarps; ++w) {
    if (warp == w) {
#pragma unroll
      for (int t = 0; t < kTiles; ++t) {
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          const int head = 2 * r + c % 2, d = dim(t, g + 8 * (c / 2));
          if (head < heads) sh.acc[head][d] += factor[c % 2] * value(t, c, head, d);
        }
      }
    }
    __syncthreads();
  }
  decode::write_split_partials<D>(p, split, hq0, heads, &sh.acc[0][0], &sh.wm[0][0], &sh.wl[0][0]);
}

OSCAR_HOST_EMULATION_END
}  // namespace oscar::runtime::gpu::detail::mma_decode
