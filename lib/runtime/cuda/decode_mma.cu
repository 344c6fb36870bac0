// Split decode attention over the INT2 segment on tensor cores (DecodeKernel::kTensorCores). Same grid, same
// partials (m, l, acc in base 2) as the CUDA-core split kernel of decode.cu, so the merge is shared.
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
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>

#include "runtime/cuda/decode_mma_kernel.cuh"
#include "runtime/cuda/kernels.h"

namespace oscar::runtime::gpu::detail {

namespace {

using mma_decode::decode_int2_mma_kernel;
using mma_decode::kRows;
using mma_decode::kThreads;

template <int D, int NG>
void launch_groups(const DecodeLaunch& p, cudaStream_t stream) {
  const dim3 grid(unsigned(p.int2_splits), unsigned(p.kv_heads));
  for (int base = 0; base < p.group_heads; base += kRows) {
    const int heads = p.group_heads - base < kRows ? p.group_heads - base : kRows;
    decode_int2_mma_kernel<D, NG><<<grid, kThreads, 0, stream>>>(p, base, heads);
    check_cuda(cudaGetLastError(), "tensor-core decode kernel launch");
  }
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
  if (!int2_mma_decode_supported(p.head_dim, p.k_group_size, p.v_group_size, p.int2_chunk)) throw std::invalid_argument("tensor-core decode: unsupported head_dim, groups or chunk");
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_handle);
  switch (p.head_dim) {
    case 64: launch_head_dim<64>(p, stream); break;
    case 128: launch_head_dim<128>(p, stream); break;
    case 256: launch_head_dim<256>(p, stream); break;
    default: throw std::invalid_argument("CUDA decode: head_dim must be 64, 128 or 256");
  }
}

}  // namespace oscar::runtime::gpu::detail
