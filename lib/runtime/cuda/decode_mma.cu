// Launches the tensor-core split decode kernel (decode_mma_kernel.cuh, where the design is described).
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "runtime/cuda/decode_bf16_mma_kernel.cuh"
#include "runtime/cuda/decode_mma_kernel.cuh"
#include "runtime/cuda/kernels.h"

namespace oscar::runtime::gpu::detail {

namespace {

using mma_decode::decode_bf16_mma_kernel;
using mma_decode::decode_int2_mma_kernel;
using mma_decode::kThreads;

template <int D, int NG>
void launch_groups(const DecodeLaunch& p, cudaStream_t stream) {
  const dim3 grid(unsigned(p.int2_splits), unsigned(p.kv_heads));
  for_each_head_launch(p.group_heads, [&](int base, int heads) {
    decode_int2_mma_kernel<D, NG><<<grid, kThreads, 0, stream>>>(p, base, heads);
    check_cuda(cudaGetLastError(), "tensor-core decode kernel launch");
  });
}

template <int D>
void launch_head_dim(const DecodeLaunch& p, cudaStream_t stream) {
  if (p.k_group_size == D) return launch_groups<D, 1>(p, stream);
  if (p.k_group_size == 64) return launch_groups<D, D / 64>(p, stream);
  return launch_groups<D, D / 32>(p, stream);
}

}  // namespace

bool int2_mma_decode_supported(int head_dim, int key_group_size, int value_group_size, std::int64_t int2_chunk) {
  const int d = head_dim, g = key_group_size;
  const bool dims = d == 64 || d == 128 || d == 256;
  const bool groups = (g == d || g == 64 || g == 32) && g <= d && value_group_size == g;
  // Tiles of 16 tokens start at multiples of 16 within a chunk.
  return dims && groups && int2_chunk > 0 && int2_chunk % mma::kTileTokens == 0;
}

void launch_decode_int2_mma(const DecodeLaunch& p, void* stream_handle) {
  if (p.int2_splits <= 0 || !int2_mma_decode_supported(p.head_dim, p.k_group_size, p.v_group_size, p.int2_chunk)) {
    throw std::invalid_argument("tensor-core decode: unsupported head_dim, groups or chunk");
  }
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  with_decode_head_dim(p.head_dim, [&](auto d) { launch_head_dim<decltype(d)::value>(p, stream); });
}

void launch_decode_bf16_mma(const DecodeLaunch& p, void* stream_handle) {
  if (p.fp_splits <= 0) throw std::invalid_argument("tensor-core bf16 decode: no bf16 splits");
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  const dim3 grid(unsigned(p.fp_splits), unsigned(p.kv_heads));
  with_decode_head_dim(p.head_dim, [&](auto d) {
    for_each_head_launch(p.group_heads, [&](int base, int heads) {
      decode_bf16_mma_kernel<decltype(d)::value><<<grid, kThreads, 0, stream>>>(p, base, heads, p.int2_splits);
      check_cuda(cudaGetLastError(), "tensor-core bf16 decode kernel launch");
    });
  });
}

}  // namespace oscar::runtime::gpu::detail
