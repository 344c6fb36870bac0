// Kernels of the CUDA baselines (baselines_cuda.h): naive-sym (one warp per scale group) and TurboQuant (one
// thread block per row). Compiled with --fmad=false and IEEE division/square root (CMakeLists.txt); the
// arithmetic is baselines_row.cuh's, which states why it equals the CPU classes' bit for bit.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "runtime/cuda/baselines_kernels.h"
#include "runtime/cuda/kernels.h"

namespace oscar::runtime::gpu::detail {

namespace {

constexpr std::int64_t kMaxGridBlocks = 1 << 20;  // blocks loop over further rows or groups
constexpr int kNaiveThreads = 256;
constexpr int kNaiveWarps = kNaiveThreads / 32;
constexpr int kTurboMaxThreads = 256;

struct BlockBarrier {
  __host__ __device__ void operator()() const {
#if defined(__CUDA_ARCH__)
    __syncthreads();
#endif
  }
};

__global__ void __launch_bounds__(kNaiveThreads)
    naive_sym_kernel(const float* __restrict__ x, std::int64_t groups, int group_size, float* __restrict__ out) {
  const int lane = int(threadIdx.x) & 31;
  const std::int64_t warp = std::int64_t(blockIdx.x) * kNaiveWarps + (threadIdx.x >> 5);
  const std::int64_t warps = std::int64_t(gridDim.x) * kNaiveWarps;
  for (std::int64_t g = warp; g < groups; g += warps) {  // warp-uniform loop
    const float* src = x + g * group_size;
    float* dst = out + g * group_size;
    float amax = 0.0f;
    for (int e = lane; e < group_size; e += 32) amax = max_exact(amax, abs_exact(src[e]));
    for (int offset = 16; offset > 0; offset >>= 1) {
      amax = max_exact(amax, __shfl_xor_sync(0xffffffffu, amax, offset));  // exact in any order
    }
    const double s = naive_sym_scale(amax);
    for (int e = lane; e < group_size; e += 32) dst[e] = s == 0.0 ? 0.0f : naive_sym_value(src[e], s);
  }
}

__global__ void __launch_bounds__(kTurboMaxThreads)
    turboquant_kernel(const float* __restrict__ x, std::int64_t rows, int heads, const double* __restrict__ signs,
                      TurboParams p, float* __restrict__ out) {
  extern __shared__ double row[];  // [d]
  __shared__ TurboScratch scratch;
  const int d = p.d;
  for (std::int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int h = int(r % heads);
    turboquant_row_block(int(threadIdx.x), int(blockDim.x), p, x + r * d, signs + std::int64_t(h) * d, row, scratch,
                         out + r * d, BlockBarrier{});
  }
}

int grid_for(std::int64_t blocks) {
  return int(std::min<std::int64_t>(std::max<std::int64_t>(blocks, 1), kMaxGridBlocks));
}

}  // namespace

void launch_naive_sym(const float* x, std::int64_t groups, int group_size, float* out) {
  if (groups <= 0) return;
  naive_sym_kernel<<<grid_for((groups + kNaiveWarps - 1) / kNaiveWarps), kNaiveThreads>>>(x, groups, group_size, out);
  check_cuda(cudaGetLastError(), "naive-sym kernel launch");
}

void launch_turboquant(const float* x, std::int64_t rows, int heads, const double* signs, const TurboParams& p,
                       float* out) {
  if (rows <= 0) return;
  const int threads = std::min(kTurboMaxThreads, std::max(32, (p.d / 2 + 31) / 32 * 32));
  const std::size_t shared = std::size_t(p.d) * sizeof(double);
  turboquant_kernel<<<grid_for(rows), threads, shared>>>(x, rows, heads, signs, p, out);
  check_cuda(cudaGetLastError(), "TurboQuant kernel launch");
}

}  // namespace oscar::runtime::gpu::detail
