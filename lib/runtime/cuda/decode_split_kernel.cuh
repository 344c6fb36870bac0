// The CUDA-core split decode kernel (DecodeKernel::kCudaCores, the default; launched by decode.cu).
//
// Split kernel: grid (splits, Hkv), 4 warps. A block takes one KV head, all its query heads (≤ 8 per
// launch: K and V are read once for the whole GQA group) and a chunk of tokens, either of the INT2 segment
// or of the bf16 segments (sink, then recent ring). Warps take tiles of 32 tokens in turn:
//  - scores: lane i owns token i of the tile: it reads the token's whole key row (INT2: d/4 bytes, one
//    coalesced 1 KB read per warp at d = 128 since a page stores a head's rows contiguously; bf16: 2d bytes),
//    dequantises it 32 elements at a time ((code − zero)·scale, the format's formula) and dots it with every
//    query head (queries in shared memory);
//  - online softmax per query head, in base 2 (scores pre-multiplied by scale·log2 e);
//  - values: the tile's value rows are staged in shared memory (INT2) or read directly (bf16); lane i owns
//    elements i, i+32, … and accumulates p·v̂ for every query head.
// The block's warps are combined in shared memory and the block writes its partial (m, l, acc[d]) per query
// head. The merges (decode_merge.cuh): one block per query head combines the partials by log-sum-exp, divides,
// and multiplies by R_Vᵀ (y[j] = Σ_i o[i]·R[j][i]).
//
// A header so that the tests can also compile it for the host against tests/runtime_cuda/cuda_emulation.h and
// run the kernel's own code on a machine without a GPU, like the tensor-core kernels.
#pragma once

#include <cstdint>

#include "runtime/cuda/decode_common.cuh"  // with the CUDA headers (or their host emulation)
#include "runtime/cuda/kernels.h"

namespace oscar::runtime::gpu::detail::cuda_core_decode {
OSCAR_HOST_EMULATION_BEGIN

inline constexpr int kThreads = kDecodeThreads;
inline constexpr int kMaxGq = kDecodeMaxGroupHeads;
using decode::int2_row;
using decode::kNegInf;
using decode::load_scale;
using decode::warp_max;
using decode::warp_sum;

template <int D>
struct DecodeShared {
  static constexpr int kWords = D / 16;  // 32-bit words of a packed row
  float q[kMaxGq][D];
  float p[kDecodeWarps][kMaxGq][32];
  std::uint32_t vcodes[kDecodeWarps][32][kWords + 1];  // +1: no bank conflicts when lanes write their rows
  float vscale[kDecodeWarps][32][D / 32];               // per 32-element block (groups are multiples of 32)
  float vzero[kDecodeWarps][32][D / 32];
  float acc[kMaxGq][D];
  float wm[kDecodeWarps][kMaxGq];
  float wl[kDecodeWarps][kMaxGq];
};

__device__ __forceinline__ float bf16_bits_to_float(std::uint32_t bits16) { return __uint_as_float(bits16 << 16); }

/// s[hh] += q[hh][32j … 32j+31] · k[0 … 31] for the launch's query heads.
template <int D>
__device__ __forceinline__ void dot_block(const DecodeShared<D>& sh, int j, const float (&k)[32], int heads,
                                          float (&s)[kMaxGq]) {
#pragma unroll
  for (int hh = 0; hh < kMaxGq; ++hh) {
    if (hh < heads) {
      const float4* q4 = reinterpret_cast<const float4*>(&sh.q[hh][32 * j]);
      float a = 0.0f;
#pragma unroll
      for (int u = 0; u < 8; ++u) {
        const float4 qv = q4[u];
        a += qv.x * k[4 * u] + qv.y * k[4 * u + 1] + qv.z * k[4 * u + 2] + qv.w * k[4 * u + 3];
      }
      s[hh] += a;
    }
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads) decode_split_kernel(DecodeLaunch p, int head_base, int heads) {
  constexpr int NB = D / 4;    // packed bytes per row
  constexpr int NW = D / 16;   // packed 32-bit words per row
  constexpr int NJ = D / 32;   // 32-element blocks; lane owns element lane + 32j of block j
  __shared__ __align__(16) DecodeShared<D> sh;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int h = blockIdx.y, split = blockIdx.x;
  const int hq0 = h * p.group_heads + head_base;

  for (int i = threadIdx.x; i < kMaxGq * D; i += kThreads) {
    const int hh = i / D, e = i % D;
    sh.q[hh][e] = hh < heads ? p.q[std::int64_t(hq0 + hh) * D + e] : 0.0f;
  }
  __syncthreads();

  const bool int2 = split < p.int2_splits;
  std::int64_t begin, end;
  if (int2) {
    begin = std::int64_t(split) * p.int2_chunk;
    end = min(p.int2_tokens, begin + p.int2_chunk);
  } else {
    begin = std::int64_t(split - p.int2_splits) * p.fp_chunk;
    end = min(p.sink_tokens + p.recent_tokens, begin + p.fp_chunk);
  }
  const int k_groups = D / p.k_group_size, v_groups = D / p.v_group_size;

  // Where lane's value elements e = lane + 32j sit in a packed row: word, and bit shift within it.
  int vword[NJ], vshift[NJ];
#pragma unroll
  for (int j = 0; j < NJ; ++j) {
    const int e = lane + 32 * j, b = e % NB;
    vword[j] = b >> 2;
    vshift[j] = 8 * (b & 3) + 2 * (e / NB);
  }

  float m[kMaxGq], l[kMaxGq], acc[kMaxGq][NJ];
#pragma unroll
  for (int hh = 0; hh < kMaxGq; ++hh) {
    m[hh] = kNegInf;
    l[hh] = 0.0f;
#pragma unroll
    for (int j = 0; j < NJ; ++j) acc[hh][j] = 0.0f;
  }

  for (std::int64_t t0 = begin + warp * 32; t0 < end; t0 += kDecodeWarps * 32) {
    const std::int64_t t = t0 + lane;
    const bool valid = t < end;
    float s[kMaxGq];
#pragma unroll
    for (int hh = 0; hh < kMaxGq; ++hh) s[hh] = 0.0f;

    if (int2) {
      if (valid) {
        const std::int64_t row = int2_row(p, t, h);
        // Key: whole packed row into registers, scales/zeros per 32-element block.
        std::uint32_t w[NW];
        decode::load_words(p.k_codes + row * NB, 0, 1, w);
#pragma unroll
        for (int j = 0; j < NJ; ++j) {
          const int g = (32 * j) / p.k_group_size;
          const float sc = load_scale(p.k_scales, row * k_groups + g, p.k_float16);
          const float zr = load_scale(p.k_zeros, row * k_groups + g, p.k_float16);
          float k[32];
#pragma unroll
          for (int u = 0; u < 32; ++u) {
            const int e = 32 * j + u, b = e % NB;
            const std::uint32_t code = (w[b >> 2] >> (8 * (b & 3) + 2 * (e / NB))) & 3u;
            k[u] = (float(code) - zr) * sc;
          }
          dot_block<D>(sh, j, k, heads, s);
        }
        // Value: stage the row for the warp.
        const uint4* vsrc = reinterpret_cast<const uint4*>(p.v_codes + row * NB);
#pragma unroll
        for (int i = 0; i < NW / 4; ++i) {
          const uint4 v = vsrc[i];
          sh.vcodes[warp][lane][4 * i] = v.x;
          sh.vcodes[warp][lane][4 * i + 1] = v.y;
          sh.vcodes[warp][lane][4 * i + 2] = v.z;
          sh.vcodes[warp][lane][4 * i + 3] = v.w;
        }
#pragma unroll
        for (int j = 0; j < NJ; ++j) {
          const int g = (32 * j) / p.v_group_size;
          sh.vscale[warp][lane][j] = load_scale(p.v_scales, row * v_groups + g, p.v_float16);
          sh.vzero[warp][lane][j] = load_scale(p.v_zeros, row * v_groups + g, p.v_float16);
        }
      }
    } else if (valid) {
      const uint4* src = reinterpret_cast<const uint4*>(decode::bf16_row<D>(p, p.sink_k, p.ring_k, t, h));
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        float k[32];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const uint4 v = src[4 * j + i];
          const std::uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            k[8 * i + 2 * c] = bf16_bits_to_float(words[c] & 0xffffu);
            k[8 * i + 2 * c + 1] = bf16_bits_to_float(words[c] >> 16);
          }
        }
        dot_block<D>(sh, j, k, heads, s);
      }
    }

    // Online softmax, base 2.
#pragma unroll
    for (int hh = 0; hh < kMaxGq; ++hh) {
      if (hh < heads) {
        const float score = valid ? s[hh] * p.score_scale_log2 : kNegInf;
        const float m_new = fmaxf(m[hh], warp_max(score));  // finite: lane 0's token is valid
        const float alpha = exp2f(m[hh] - m_new);            // 0 on the first tile (m = −inf)
        const float pr = valid ? exp2f(score - m_new) : 0.0f;
        l[hh] = l[hh] * alpha + pr;
#pragma unroll
        for (int j = 0; j < NJ; ++j) acc[hh][j] *= alpha;
        m[hh] = m_new;
        sh.p[warp][hh][lane] = pr;
      }
    }
    __syncwarp();

    const int count = int(min(std::int64_t(32), end - t0));
    for (int tt = 0; tt < count; ++tt) {
      float v[NJ];
      if (int2) {
#pragma unroll
        for (int j = 0; j < NJ; ++j) {
          const std::uint32_t code = (sh.vcodes[warp][tt][vword[j]] >> vshift[j]) & 3u;
          v[j] = (float(code) - sh.vzero[warp][tt][j]) * sh.vscale[warp][tt][j];
        }
      } else {
        const std::uint16_t* row = decode::bf16_row<D>(p, p.sink_v, p.ring_v, t0 + tt, h);
#pragma unroll
        for (int j = 0; j < NJ; ++j) v[j] = bf16_bits_to_float(row[lane + 32 * j]);
      }
#pragma unroll
      for (int hh = 0; hh < kMaxGq; ++hh) {
        if (hh < heads) {
          const float pr = sh.p[warp][hh][tt];
#pragma unroll
          for (int j = 0; j < NJ; ++j) acc[hh][j] += pr * v[j];
        }
      }
    }
    __syncwarp();
  }

  // Combine the warps: block max M, each warp's share scaled by 2^(m_w − M), added in warp order.
#pragma unroll
  for (int hh = 0; hh < kMaxGq; ++hh) l[hh] = warp_sum(l[hh]);
  if (lane == 0) {
#pragma unroll
    for (int hh = 0; hh < kMaxGq; ++hh) {
      sh.wm[warp][hh] = m[hh];
      sh.wl[warp][hh] = l[hh];
    }
  }
  for (int i = threadIdx.x; i < kMaxGq * D; i += kThreads) (&sh.acc[0][0])[i] = 0.0f;
  __syncthreads();
  float factor[kMaxGq];
#pragma unroll
  for (int hh = 0; hh < kMaxGq; ++hh) {
    float block_max = kNegInf;
    for (int w = 0; w < kDecodeWarps; ++w) block_max = fmaxf(block_max, sh.wm[w][hh]);
    factor[hh] = m[hh] == kNegInf ? 0.0f : exp2f(m[hh] - block_max);
  }
  for (int w = 0; w < kDecodeWarps; ++w) {
    if (warp == w) {
#pragma unroll
      for (int hh = 0; hh < kMaxGq; ++hh) {
        if (hh < heads) {
#pragma unroll
          for (int j = 0; j < NJ; ++j) sh.acc[hh][lane + 32 * j] += acc[hh][j] * factor[hh];
        }
      }
    }
    __syncthreads();
  }

  decode::write_split_partials<D>(p, split, hq0, heads, &sh.acc[0][0], &sh.wm[0][0], &sh.wl[0][0]);
}

OSCAR_HOST_EMULATION_END
}  // namespace oscar::runtime::gpu::detail::cuda_core_decode
