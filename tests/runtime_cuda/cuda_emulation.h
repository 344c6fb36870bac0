// Host emulation of the CUDA built-ins that the decode kernels use, so that their own source
// (lib/runtime/cuda/decode_*kernel.cuh, decode_merge.cuh) runs on a machine without a GPU: every CUDA thread of
// a block is a std::thread; __syncthreads, __syncwarp, warp shuffles and mma.sync are collectives over the
// block's or the warp's threads.
// The MMAs follow the PTX ISA's fragment tables (the same tables as test_decode_mma_layout.cpp), adding the
// exact products and rounding once to the accumulator type. Slow (a mutex and condition variable per
// collective) and meant for a few thousand tokens. Include it before the kernel header, in a host-only file.
#pragma once

#if defined(__CUDACC__)
#error "cuda_emulation.h is for host compilers only"
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/dtype.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static  // one block runs at a time: a static is the block's shared memory
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)

// Types of their own (in a namespace: no clash with the CUDA headers' in other files of the same program).
namespace cuda_emulation {
struct dim3 {
  unsigned x = 0, y = 0, z = 0;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct half {
  std::uint16_t bits;
};
struct half2 {
  half x, y;  // x: the low 16 bits
};
}  // namespace cuda_emulation
using uint2 = cuda_emulation::uint2;
using uint4 = cuda_emulation::uint4;
using float4 = cuda_emulation::float4;
using __half = cuda_emulation::half;
using __half2 = cuda_emulation::half2;

namespace cuda_emulation {

class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const unsigned long long generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      released_.notify_all();
      return;
    }
    released_.wait(lock, [&] { return generation_ != generation; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable released_;
  int count_;
  int arrived_ = 0;
  unsigned long long generation_ = 0;
};

struct Warp {
  Barrier barrier{32};
  std::uint32_t words[32][8] = {};  // each lane's operands of the collective in progress
};

struct Block {
  explicit Block(int threads) : barrier(threads), warps(new Warp[std::size_t(threads / 32)]) {}
  Barrier barrier;
  std::unique_ptr<Warp[]> warps;
};

inline thread_local dim3 thread_index, block_index, block_dim;
inline thread_local Block* current_block = nullptr;

inline int lane() { return int(thread_index.x) & 31; }
inline Warp& warp() { return current_block->warps[thread_index.x >> 5]; }

/// Runs kernel() as grid.x × grid.y × grid.z blocks (a z of 0 counts as 1) of `threads` threads, one block
/// after the other.
template <class Kernel>
void launch(dim3 grid, int threads, const Kernel& kernel) {
  for (unsigned z = 0; z < std::max(grid.z, 1u); ++z) {
    for (unsigned y = 0; y < grid.y; ++y) {
      for (unsigned x = 0; x < grid.x; ++x) {
        Block block(threads);
        std::vector<std::thread> pool;
        for (int t = 0; t < threads; ++t) {
          pool.emplace_back([&, t] {
            thread_index = {unsigned(t), 0, 0};
            block_index = {x, y, z};
            block_dim = {unsigned(threads), 1, 1};
            current_block = &block;
            kernel();
          });
        }
        for (std::thread& thread : pool) thread.join();
      }
    }
  }
}

/// Every lane publishes `value`; returns the one of lane `source`.
template <class T>
T exchange(T value, int source) {
  static_assert(sizeof(T) <= sizeof(Warp::words[0]), "value too large");
  Warp& w = warp();
  std::memcpy(&w.words[lane()][0], &value, sizeof(T));
  w.barrier.wait();
  T out;
  std::memcpy(&out, &w.words[source][0], sizeof(T));
  w.barrier.wait();
  return out;
}

using oscar::float16_to_float;
using oscar::float_to_float16;  // round to nearest even

/// Publishes the lane's A registers (words 0…3) and B registers (words 4, 5) of an MMA; returns once the whole
/// warp has.
inline Warp& publish_operands(const std::array<std::uint32_t, 4>& a, const std::array<std::uint32_t, 2>& b) {
  Warp& w = warp();
  for (int i = 0; i < 4; ++i) w.words[lane()][i] = a[std::size_t(i)];
  for (int i = 0; i < 2; ++i) w.words[lane()][4 + i] = b[std::size_t(i)];
  w.barrier.wait();
  return w;
}

/// mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32, D = A·B + C.
inline void mma_m16n8k32_s8(int (&c)[4], std::array<std::uint32_t, 4> a, std::array<std::uint32_t, 2> b) {
  Warp& w = publish_operands(a, b);
  const int me = lane();
  auto byte = [](std::uint32_t word, int k) { return int(std::int8_t((word >> (8 * (k % 4))) & 0xff)); };
  const int g = me / 4, t = me % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
    std::int64_t sum = c[i];
    for (int k = 0; k < 32; ++k) {
      const int a_lane = (row % 8) * 4 + (k % 16) / 4, a_reg = (row >= 8 ? 1 : 0) + (k >= 16 ? 2 : 0);
      const int b_lane = col * 4 + (k % 16) / 4, b_reg = 4 + (k >= 16 ? 1 : 0);
      sum += std::int64_t(byte(w.words[a_lane][a_reg], k)) * byte(w.words[b_lane][b_reg], k);
    }
    c[i] = int(sum);
  }
  w.barrier.wait();
}

/// mma.sync.aligned.m16n8k16.row.col.f32 on 16-bit elements (decoded by `element`), D = A·B + C: exact products
/// and sum, one rounding.
template <class Element>
void mma_m16n8k16(float (&c)[4], std::array<std::uint32_t, 4> a, std::array<std::uint32_t, 2> b,
                  const Element& element) {
  Warp& w = publish_operands(a, b);
  const int me = lane();
  auto half = [&](std::uint32_t word, int k) { return double(element(std::uint16_t(word >> (16 * (k % 2))))); };
  const int g = me / 4, t = me % 4;
  for (int i = 0; i < 4; ++i) {
    const int row = g + 8 * (i / 2), col = 2 * t + i % 2;
    double sum = c[i];
    for (int k = 0; k < 16; ++k) {
      const int a_lane = (row % 8) * 4 + (k % 8) / 2, a_reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
      const int b_lane = col * 4 + (k % 8) / 2, b_reg = 4 + (k >= 8 ? 1 : 0);
      sum += half(w.words[a_lane][a_reg], k) * half(w.words[b_lane][b_reg], k);
    }
    c[i] = float(sum);
  }
  w.barrier.wait();
}
inline void mma_m16n8k16_f16(float (&c)[4], std::array<std::uint32_t, 4> a, std::array<std::uint32_t, 2> b) {
  mma_m16n8k16(c, a, b, float16_to_float);
}
inline void mma_m16n8k16_bf16(float (&c)[4], std::array<std::uint32_t, 4> a, std::array<std::uint32_t, 2> b) {
  mma_m16n8k16(c, a, b, oscar::bfloat16_to_float);
}

}  // namespace cuda_emulation

#define threadIdx (::cuda_emulation::thread_index)
#define blockIdx (::cuda_emulation::block_index)
#define blockDim (::cuda_emulation::block_dim)

inline void __syncthreads() { cuda_emulation::current_block->barrier.wait(); }
inline void __syncwarp() { cuda_emulation::warp().barrier.wait(); }  // the kernels call it with the whole warp
inline float __shfl_xor_sync(unsigned, float v, int mask) { return cuda_emulation::exchange(v, cuda_emulation::lane() ^ mask); }
inline int __shfl_xor_sync(unsigned, int v, int mask) { return cuda_emulation::exchange(v, cuda_emulation::lane() ^ mask); }
inline float __shfl_sync(unsigned, float v, int source) { return cuda_emulation::exchange(v, source); }

inline float __uint_as_float(unsigned u) { return oscar::bits_to_float(u); }
inline int __float2int_rn(float x) { return int(std::nearbyint(x)); }
inline __half __ushort_as_half(unsigned short bits) { return __half{bits}; }
inline float __half2float(__half h) { return cuda_emulation::float16_to_float(h.bits); }
inline __half2 __halves2half2(__half low, __half high) { return __half2{low, high}; }
inline __half2 __floats2half2_rn(float low, float high) {
  return __half2{__half{cuda_emulation::float_to_float16(low)}, __half{cuda_emulation::float_to_float16(high)}};
}
inline float __low2float(__half2 h) { return __half2float(h.x); }
inline float __high2float(__half2 h) { return __half2float(h.y); }
inline __half2 __hsub2(__half2 a, __half2 b) {
  return __floats2half2_rn(__low2float(a) - __low2float(b), __high2float(a) - __high2float(b));
}
using std::min;
