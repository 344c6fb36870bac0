// Rotation and rotate+clip+quantize+pack kernels (the latter also demotes bf16 rows of the recent ring into
// INT2 pages). Compiled with --fmad=false and IEEE division/square root (CMakeLists.txt): see
// quantize_row.cuh for why the codes, scales and zeros equal the CPU reference's bit for bit.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "runtime/cuda/dependent_launch.cuh"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/quantize_row.cuh"

namespace oscar::runtime::gpu::detail {

namespace {

struct BlockBarrier {
  __host__ __device__ void operator()() const {
#if defined(__CUDA_ARCH__)
    __syncthreads();
#endif
  }
};

constexpr std::int64_t kMaxGridBlocks = 1 << 20;  // blocks loop over further rows

__global__ void __launch_bounds__(kQuantizeThreads) quantize_kernel(QuantizeLaunch p) {
  __shared__ RowScratch s;
  const int d = p.format.head_dim;
  const int tid = threadIdx.x, nt = blockDim.x;
  const int scale_bytes = p.format.float16_scales ? 2 : 4;
  for (std::int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
    const std::int64_t token = r / p.heads;
    const int h = int(r % p.heads);
    if (p.src_f32 != nullptr) {
      const float* src = p.src_f32 + r * d;
      for (int e = tid; e < d; e += nt) s.staged[e] = src[e];
    } else {
      const std::int64_t slot = (p.src_token_base + token) % p.src_token_modulus;
      const std::uint16_t* src = p.src_bf16 + (slot * p.heads + h) * d;
      for (int e = tid; e < d; e += nt) s.staged[e] = bf16_to_float(src[e]);
    }
    __syncthreads();

    std::int64_t index = r;
    if (p.page_table != nullptr) {
      const std::int64_t t = p.dst_token_base + token;
      const std::int64_t page = p.page_table[t / p.page_tokens];
      index = (page * p.heads + h) * p.page_tokens + t % p.page_tokens;
    }
    RowOutput out;
    out.codes = p.codes + index * (d / 4);
    out.scales = static_cast<unsigned char*>(p.scales) + index * p.format.groups * scale_bytes;
    out.zeros = static_cast<unsigned char*>(p.zeros) + index * p.format.groups * scale_bytes;
    const float* rotation =
        p.rotation != nullptr ? p.rotation + std::int64_t(h / p.heads_per_matrix) * d * d : nullptr;
    quantize_row(tid, nt, p.format, rotation, p.round_to_bf16, s, out, static_cast<unsigned long long>(r), p.errors,
                 BlockBarrier{});
    __syncthreads();
  }
}

__global__ void __launch_bounds__(kMaxHeadDim) rotate_kernel(RotateLaunch p) {
  __shared__ float x[kMaxHeadDim];
  // A decode's split kernel (a dependent launch) may start its cache loads meanwhile; it waits for the query.
  allow_next_kernel();
  const int d = p.head_dim;
  for (std::int64_t r = blockIdx.x; r < p.rows; r += gridDim.x) {
    for (int e = threadIdx.x; e < d; e += blockDim.x) x[e] = p.src[r * d + e];
    __syncthreads();
    const std::int64_t token = r / p.heads;
    const int h = int(r % p.heads);
    const float* m = p.rotation != nullptr ? p.rotation + std::int64_t(h / p.heads_per_matrix) * d * d : nullptr;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
      float y;
      if (m == nullptr) {
        y = x[j];
      } else if (!p.transpose) {
        // Rotation::apply: y[j] = Σ_i x[i]·R[i][j], i ascending. Unrolled so that 16 loads of R are in flight
        // at a time (the sum's order, hence its bits, stays the same): a decode's query rotation is a fixed
        // cost of every step, and it is latency, not bandwidth.
        y = 0.0f;
#pragma unroll 16
        for (int i = 0; i < d; ++i) y = add_rn(y, mul_rn(x[i], m[i * d + j]));
      } else {
        y = 0.0f;  // Rotation::apply_transpose: y[j] = Σ_i x[i]·R[j][i], i ascending
#pragma unroll 16
        for (int i = 0; i < d; ++i) y = add_rn(y, mul_rn(x[i], m[j * d + i]));
      }
      if (p.out_bf16 != nullptr) {
        std::int64_t slot = p.dst_token_base + token;
        if (p.dst_token_modulus > 0) slot %= p.dst_token_modulus;
        p.out_bf16[(slot * p.heads + h) * d + j] = float_to_bf16(y);
      } else {
        p.out_f32[r * d + j] = y;
      }
    }
    __syncthreads();
  }
}

int grid_for(std::int64_t rows) { return int(std::min<std::int64_t>(std::max<std::int64_t>(rows, 1), kMaxGridBlocks)); }

}  // namespace

void launch_quantize(const QuantizeLaunch& p, void* stream) {
  if (p.rows <= 0) return;
  quantize_kernel<<<grid_for(p.rows), kQuantizeThreads, 0, static_cast<cudaStream_t>(stream)>>>(p);
  check_cuda(cudaGetLastError(), "INT2 quantize kernel launch");
}

void launch_rotate(const RotateLaunch& p, void* stream) {
  if (p.rows <= 0) return;
  const int threads = std::min(kMaxHeadDim, (p.head_dim + 31) / 32 * 32);
  rotate_kernel<<<grid_for(p.rows), threads, 0, static_cast<cudaStream_t>(stream)>>>(p);
  check_cuda(cudaGetLastError(), "rotation kernel launch");
}

}  // namespace oscar::runtime::gpu::detail
