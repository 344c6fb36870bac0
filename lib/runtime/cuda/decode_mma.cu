// Launches the tensor-core split decode kernels (decode_mma_kernel.cuh, where the design is described, and
// decode_bf16_mma_kernel.cuh) and reports their occupancy, from which the splits are sized (decode_plan.h).
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "runtime/cuda/decode_bf16_mma_kernel.cuh"
#include "runtime/cuda/decode_mma_kernel.cuh"
#include "runtime/cuda/dependent_launch.cuh"
#include "runtime/cuda/kernels.h"

namespace oscar::runtime::gpu::detail {

namespace {

using mma_decode::decode_bf16_mma_kernel;
using mma_decode::decode_mixed_mma_kernel;
using mma_decode::kThreads;

/// Calls use(kernel) with the split kernel for the geometry: the mixed kernel for d and the group size (its
/// number of groups NG), or the bf16-only kernel.
template <class Use>
void with_mma_kernel(int head_dim, int group_size, bool int2, const Use& use) {
  with_decode_head_dim(head_dim, [&](auto d) {
    constexpr int D = decltype(d)::value;
    if (!int2) return use(decode_bf16_mma_kernel<D>);
    if (group_size == D) return use(decode_mixed_mma_kernel<D, 1>);
    if (group_size == 64) return use(decode_mixed_mma_kernel<D, D / 64>);
    return use(decode_mixed_mma_kernel<D, D / 32>);
  });
}

}  // namespace

bool int2_mma_decode_supported(int head_dim, int key_group_size, int value_group_size) {
  const int d = head_dim, g = key_group_size;
  const bool dims = d == 64 || d == 128 || d == 256;
  return dims && (g == d || g == 64 || g == 32) && g <= d && value_group_size == g;
}

int decode_mma_blocks_per_sm(int head_dim, int group_size, bool int2) {
  int blocks = 0;
  with_mma_kernel(head_dim, group_size, int2, [&](auto kernel) {
    check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, kThreads, 0),
               "tensor-core decode occupancy");
  });
  return blocks;
}

void launch_decode_mma(const DecodeLaunch& p, void* stream_handle) {
  const bool int2 = p.int2_splits > 0;
  // Tiles of 16 tokens start at multiples of 16 within a chunk.
  const bool whole_tiles = p.int2_chunk > 0 && p.int2_chunk % mma::kTileTokens == 0;
  if (int2 && !(int2_mma_decode_supported(p.head_dim, p.k_group_size, p.v_group_size) && whole_tiles)) {
    throw std::invalid_argument("tensor-core decode: unsupported head_dim, groups or chunk");
  }
  if (p.int2_splits + p.fp_splits <= 0) throw std::invalid_argument("tensor-core decode: no splits");
  const dim3 grid(unsigned(p.int2_splits + p.fp_splits), unsigned(p.kv_heads),
                  unsigned(decode_head_launches(p.group_heads)));
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  with_mma_kernel(p.head_dim, p.k_group_size, int2, [&](auto kernel) {
    check_cuda(launch_kernel(kernel, grid, dim3(kThreads), stream, p.overlap_launches, p),
               "tensor-core decode kernel launch");
  });
}

}  // namespace oscar::runtime::gpu::detail
