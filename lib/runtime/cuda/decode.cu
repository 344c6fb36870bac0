// Split (flash-decoding) GQA decode attention over the mixed cache, and the log-sum-exp merge: the launches.
// The CUDA-core split kernel is in decode_split_kernel.cuh, the tensor-core ones in decode_mma.cu, the merge in
// decode_merge.cuh.
#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/cuda/decode_merge.cuh"
#include "runtime/cuda/decode_split_kernel.cuh"
#include "runtime/cuda/dependent_launch.cuh"
#include "runtime/cuda/kernels.h"

namespace oscar::runtime::gpu::detail {

namespace {

using cuda_core_decode::decode_split_kernel;
using cuda_core_decode::kThreads;
using merge::decode_merge_kernel;
using merge::kMergeThreads;

template <int D>
void launch_split(const DecodeLaunch& p, int splits, cudaStream_t stream) {
  const dim3 grid(unsigned(splits), unsigned(p.kv_heads));
  for_each_head_launch(p.group_heads, [&](int base, int heads) {
    decode_split_kernel<D><<<grid, kThreads, 0, stream>>>(p, base, heads);
    check_cuda(cudaGetLastError(), "decode split kernel launch");
  });
}

}  // namespace

int decode_split_blocks_per_sm(int head_dim) {
  int blocks = 0;
  with_decode_head_dim(head_dim, [&](auto d) {
    check_cuda(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, decode_split_kernel<decltype(d)::value>,
                                                             kThreads, 0),
               "decode split kernel occupancy");
  });
  return blocks;
}

void launch_decode(const DecodeLaunch& p, void* stream_handle) {
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const int splits = p.int2_splits + p.fp_splits;
  if (p.tensor_cores) {
    launch_decode_mma(p, stream);
  } else {
    with_decode_head_dim(p.head_dim, [&](auto d) { launch_split<decltype(d)::value>(p, splits, stream); });
  }
  check_cuda(launch_kernel(decode_merge_kernel, dim3(p.kv_heads * p.group_heads), dim3(kMergeThreads), stream,
                           p.overlap_launches, p, splits),
             "decode merge kernel launch");
}

}  // namespace oscar::runtime::gpu::detail
