// The log-sum-exp merge of the split decode kernels' partials (launched by decode.cu): one block per query head
// combines the splits' (m, l, acc) in base 2, divides, and multiplies by R_Vᵀ. A header so that the tests can
// also run it on the host (tests/runtime_cuda/cuda_emulation.h), like the split kernels.
#pragma once

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#endif

#include <cstdint>

#include "runtime/cuda/decode_common.cuh"
#include "runtime/cuda/kernels.h"

namespace oscar::runtime::gpu::detail::merge {
OSCAR_HOST_EMULATION_BEGIN

using decode::kNegInf;
using decode::warp_max;
using decode::warp_sum;
inline constexpr int kMergeThreads = kMaxHeadDim;  // d ∈ {64, 128, 256} divides it: 4, 2 or 1 slices of splits
inline constexpr int kMergeTile = 1024;            // splits whose weights sit in shared memory at a time

/// out[hq] = o·R_Vᵀ (y[j] = Σ_i o[i]·R[j][i]) or o without a rotation; o in shared memory, all threads. A warp
/// takes whole rows j of R, its lanes reading consecutive elements (one thread per row would make each load
/// instruction of a warp touch 32 rows).
__device__ inline void write_merged_output(const DecodeLaunch& p, int hq, const float* o) {
  const int d = p.head_dim;
  float* out = p.out + std::int64_t(hq) * d;
  if (p.value_rotation == nullptr) {
    for (int j = threadIdx.x; j < d; j += blockDim.x) out[j] = o[j];
    return;
  }
  const int matrix = p.value_matrices == 1 ? 0 : hq / p.group_heads;
  const float* r = p.value_rotation + std::int64_t(matrix) * d * d;
  const int warps = int(blockDim.x) >> 5, lane = threadIdx.x & 31;
  for (int j = int(threadIdx.x) >> 5; j < d; j += warps) {
    float y = 0.0f;
    for (int i = lane; i < d; i += 32) y = fmaf(o[i], r[std::int64_t(j) * d + i], y);
    y = warp_sum(y);
    if (lane == 0) out[j] = y;
  }
}

/// The block-wide max (kMax) or sum of v over kMergeThreads threads; every thread gets the same value, combined
/// in warp order. `scratch` holds one float per warp.
template <bool kMax>
__device__ float merge_block_reduce(float v, float* scratch) {
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // a previous reduction may still be reading scratch
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = scratch[0];
  for (int w = 1; w < kMergeThreads / 32; ++w) r = kMax ? fmaxf(r, scratch[w]) : r + scratch[w];
  return r;
}

// The merge of both kernel families. The partials are read with loads that do not wait on each other: the max
// and the normaliser are block reductions over the splits, and the kMergeThreads / d slices of the block each
// sum every slices-th split's acc for all d elements. (The first merge walked the splits one after another per
// element, each load waiting on the one before: on an H200 it took 89 of 353 µs at 128K tokens.)
__global__ void __launch_bounds__(kMergeThreads) decode_merge_kernel(DecodeLaunch p, int splits) {
  __shared__ float weight[kMergeTile];
  __shared__ float slice_sum[kMergeThreads];
  __shared__ float o[kMaxHeadDim];
  __shared__ float scratch[kMergeThreads / 32];
  wait_for_previous_kernel();  // the split kernel's partials
  const int d = p.head_dim;
  const int query_heads = p.kv_heads * p.group_heads;
  const int hq = blockIdx.x;
  float local_max = kNegInf;
  for (int s = threadIdx.x; s < splits; s += kMergeThreads) {
    local_max = fmaxf(local_max, p.part_m[std::int64_t(s) * query_heads + hq]);
  }
  const float big = merge_block_reduce<true>(local_max, scratch);
  float local_l = 0.0f;
  for (int s = threadIdx.x; s < splits; s += kMergeThreads) {
    const float ms = p.part_m[std::int64_t(s) * query_heads + hq];
    if (ms != kNegInf) local_l += p.part_l[std::int64_t(s) * query_heads + hq] * exp2f(ms - big);
  }
  const float total = merge_block_reduce<false>(local_l, scratch);

  const int slices = kMergeThreads / d, e = threadIdx.x % d, slice = threadIdx.x / d;
  const std::int64_t split_stride = std::int64_t(query_heads) * d;
  float a = 0.0f;
  for (int tile = 0; tile < splits; tile += kMergeTile) {
    const int n = min(kMergeTile, splits - tile);
    __syncthreads();  // the previous tile's weights are no longer read
    for (int i = threadIdx.x; i < n; i += kMergeThreads) {
      const float ms = p.part_m[std::int64_t(tile + i) * query_heads + hq];
      weight[i] = ms == kNegInf ? 0.0f : exp2f(ms - big);  // an empty split's acc is 0
    }
    __syncthreads();
    const float* acc = p.part_acc + (std::int64_t(tile) * query_heads + hq) * d + e;
#pragma unroll 4
    for (int i = slice; i < n; i += slices) a += acc[i * split_stride] * weight[i];
  }
  slice_sum[threadIdx.x] = a;
  __syncthreads();
  if (int(threadIdx.x) < d) {
    float sum = 0.0f;
    for (int k = 0; k < slices; ++k) sum += slice_sum[k * d + threadIdx.x];
    o[threadIdx.x] = sum / total;
  }
  __syncthreads();
  write_merged_output(p, hq, o);
}

OSCAR_HOST_EMULATION_END
}  // namespace oscar::runtime::gpu::detail::merge
