// Device helpers shared by the split decode kernels (decode.cu: CUDA cores; decode_mma.cu: tensor cores).
// Both kernels write the same partials, which either merge (decode_merge.cuh) combines.
#pragma once

#if defined(__CUDACC__)  // else the host emulation of tests/runtime_cuda/cuda_emulation.h
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#endif

#include <cstdint>

#include "runtime/cuda/dependent_launch.cuh"
#include "runtime/cuda/kernels.h"

// Device code compiled on the host (against tests/runtime_cuda/cuda_emulation.h) goes into an inline namespace:
// names apart from the nvcc-built kernels' in the same program.
#if defined(__CUDACC__)
#define OSCAR_HOST_EMULATION_BEGIN
#define OSCAR_HOST_EMULATION_END
#else
#define OSCAR_HOST_EMULATION_BEGIN inline namespace host_emulation {
#define OSCAR_HOST_EMULATION_END }
#endif

namespace oscar::runtime::gpu::detail::decode {
OSCAR_HOST_EMULATION_BEGIN

inline constexpr float kNegInf = -__builtin_huge_valf();
inline constexpr int kHeads = kDecodeMaxGroupHeads;  ///< query heads per launch

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/// The sum over the warp (float or int), on every lane.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o >= 1; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/// A stored scale or zero (float16 or float32) as a float.
__device__ __forceinline__ float load_scale(const void* base, std::int64_t index, bool float16) {
  if (float16) return __half2float(__ushort_as_half(static_cast<const unsigned short*>(base)[index]));
  return static_cast<const float*>(base)[index];
}

/// Row index of INT2 token t of KV head h in the page pools.
__device__ __forceinline__ std::int64_t int2_row(const DecodeLaunch& p, std::int64_t t, int h) {
  const std::uint32_t index = std::uint32_t(t), page = p.page_tokens.quotient(index);
  const std::int64_t pool_page = p.page_table[page];
  return (pool_page * p.kv_heads + h) * p.page_tokens.divisor + p.page_tokens.remainder(index, page);
}

/// kCount (a multiple of 4) 32-bit words of a 16-byte aligned row, 16 bytes at a time: words 4i … 4i+3 are
/// the row's 16-byte unit first + stride·i (lanes that share a row take interleaved units: every load
/// instruction of the warp then reads whole 32-byte sectors).
template <int kCount>
__device__ __forceinline__ void load_words(const void* row, int first, int stride, std::uint32_t (&words)[kCount]) {
  const uint4* units = static_cast<const uint4*>(row);
#pragma unroll
  for (int i = 0; i < kCount / 4; ++i) {
    const uint4 v = units[first + stride * i];
    words[4 * i] = v.x;
    words[4 * i + 1] = v.y;
    words[4 * i + 2] = v.z;
    words[4 * i + 3] = v.w;
  }
}

/// bf16 row of full-precision token t (sink first, then the recent ring) of KV head h.
template <int D>
__device__ __forceinline__ const std::uint16_t* bf16_row(const DecodeLaunch& p, const std::uint16_t* sink,
                                                         const std::uint16_t* ring, std::int64_t t, int h) {
  if (t < p.sink_tokens) return sink + (t * p.kv_heads + h) * D;
  std::int64_t slot = p.ring_start + (t - p.sink_tokens);  // both terms below ring_capacity: no division
  if (slot >= p.ring_capacity) slot -= p.ring_capacity;
  return ring + (slot * p.kv_heads + h) * D;
}

/// The block's partial for split `split` and query heads hq0 … hq0+heads−1: acc [kHeads][D] already combined
/// over the warps (relative to the block max), and each warp's max and sum, warp_maxima/warp_sums
/// [warps][kHeads].
/// All threads of the block call it after a barrier.
template <int D>
__device__ void write_split_partials(const DecodeLaunch& p, int split, int hq0, int heads, const float* acc,
                                     const float* warp_maxima, const float* warp_sums) {
  const int query_heads = p.kv_heads * p.group_heads;
  for (int i = threadIdx.x; i < heads * D; i += blockDim.x) {
    const int hh = i / D, e = i % D;
    p.part_acc[(std::int64_t(split) * query_heads + hq0 + hh) * D + e] = acc[hh * D + e];
  }
  if (int(threadIdx.x) < heads) {
    const int hh = threadIdx.x;
    float block_max = kNegInf;
    for (int w = 0; w < kDecodeWarps; ++w) block_max = fmaxf(block_max, warp_maxima[w * kHeads + hh]);
    float sum = 0.0f;
    for (int w = 0; w < kDecodeWarps; ++w) {
      const float m = warp_maxima[w * kHeads + hh];
      if (m != kNegInf) sum += warp_sums[w * kHeads + hh] * exp2f(m - block_max);
    }
    p.part_m[std::int64_t(split) * query_heads + hq0 + hh] = block_max;
    p.part_l[std::int64_t(split) * query_heads + hq0 + hh] = sum;
  }
}

OSCAR_HOST_EMULATION_END
}  // namespace oscar::runtime::gpu::detail::decode
