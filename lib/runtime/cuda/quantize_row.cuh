// One row of the INT2 format (runtime/int2_format.h) as the CUDA quantize kernel computes it: a block of
// `nt` threads works on one row in shared memory, every phase a loop `for (e = tid; e < n; e += nt)` between
// barriers. The same code compiles for the host (plain C++, no CUDA headers needed): run with nt = 1 and a
// no-op barrier it executes the kernel's algorithm sequentially, which is how the tests check the kernel's
// arithmetic against the CPU reference on machines without a GPU.
//
// Bit-exactness with runtime/int2_quantize.cpp (quantize_rows_reference) rests on:
//  - every float operation is an IEEE-754 binary32 operation rounded to nearest even, in the reference's
//    order, never contracted into an FMA: on the device the explicit __fadd_rn/__fsub_rn/__fmul_rn/
//    __fdiv_rn/__fsqrt_rn intrinsics (and the file is compiled with --fmad=false, --prec-div=true,
//    --prec-sqrt=true, --ftz=false), on the host the plain operators (the test target adds -ffp-contract=off);
//  - comparisons, min/max, fabs, the clamp and the float16 rounding are exact operations or integer code;
//    the min of a group is normalised with + 0.0f (as minmax_group_params does), so the reduction order of
//    min/max cannot show in the result, and the clip threshold is the idx-th smallest magnitude, a value that
//    does not depend on how it is selected (bitonic sort of the magnitude bits here, nth_element there);
//  - the sums of the Lloyd-Max variant follow group_sum's fixed order (32 strided partial sums, then halving),
//    computed by one thread per group exactly as written in int2_format.cpp;
//  - the optional rotation is y[j] = (((0 + x[0]·R[0][j]) + x[1]·R[1][j]) + …) + x[d−1]·R[d−1][j], each
//    product and each sum rounded to float32, i ascending: the order of Rotation::apply (rotation.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define OSCAR_HD __host__ __device__ __forceinline__
#else
#define OSCAR_HD inline
#endif

namespace oscar::runtime::gpu::detail {

inline constexpr int kMaxHeadDim = 256;  ///< d ≤ 256 on the GPU (one row per block, in shared memory)
inline constexpr int kMaxGroups = 8;     ///< d / 32
inline constexpr int kQuantizeThreads = 128;

// ---- IEEE float32 operations, rounded to nearest, never fused ----------------------------------------------

OSCAR_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
OSCAR_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
OSCAR_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
OSCAR_HD float div_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
OSCAR_HD float sqrt_rn(float a) {
#if defined(__CUDA_ARCH__)
  return __fsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
OSCAR_HD std::uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}
OSCAR_HD float bits_float(std::uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}
OSCAR_HD float abs_exact(float f) { return bits_float(float_bits(f) & 0x7fffffffu); }
OSCAR_HD bool is_finite(float f) { return (float_bits(f) & 0x7f800000u) != 0x7f800000u; }
OSCAR_HD float min_exact(float a, float b) { return b < a ? b : a; }  // std::min(a, b)
OSCAR_HD float max_exact(float a, float b) { return a < b ? b : a; }  // std::max(a, b)

// ---- 16-bit conversions: integer code identical to core/dtype.h ------------------------------------------

/// float32 -> IEEE binary16 bits, round to nearest even (core/dtype.h float_to_float16).
OSCAR_HD std::uint16_t to_float16_bits(float f) {
  const std::uint32_t bits = float_bits(f);
  const std::uint16_t sign = std::uint16_t((bits >> 16) & 0x8000u);
  const std::uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits >= 0x7f800000u) return std::uint16_t(sign | 0x7c00u | (abs_bits > 0x7f800000u ? 0x200u : 0u));
  if (abs_bits >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);
  if (abs_bits < 0x38800000u) {
    if (abs_bits < 0x33000000u) return sign;
    const std::uint32_t exponent = abs_bits >> 23;
    const std::uint32_t mantissa = (abs_bits & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126u - exponent;
    std::uint32_t result = mantissa >> shift;
    const std::uint32_t remainder = mantissa & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1u);
    if (remainder > halfway || (remainder == halfway && (result & 1u))) ++result;
    return std::uint16_t(sign | std::uint16_t(result));
  }
  std::uint32_t rebased = abs_bits - 0x38000000u;
  const std::uint32_t remainder = rebased & 0x1fffu;
  rebased >>= 13;
  if (remainder > 0x1000u || (remainder == 0x1000u && (rebased & 1u))) ++rebased;
  return std::uint16_t(sign | std::uint16_t(rebased));
}

/// The stored float16 of a scale or zero: saturating at ±65504 (int2_format.cpp to_stored_float16).
OSCAR_HD std::uint16_t to_stored_float16_bits(float value) {
  const std::uint16_t bits = to_float16_bits(value);
  if ((bits & 0x7fffu) == 0x7c00u) return std::uint16_t((bits & 0x8000u) | 0x7bffu);
  return bits;
}

/// bfloat16 bits -> float32 (exact) and float32 -> bfloat16 bits (round to nearest even; core/dtype.h).
OSCAR_HD float bf16_to_float(std::uint16_t h) { return bits_float(std::uint32_t(h) << 16); }
OSCAR_HD std::uint16_t float_to_bf16(float f) {
  const std::uint32_t bits = float_bits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((bits >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return std::uint16_t((bits + rounding) >> 16);
}

// ---- Per-group arithmetic (int2_format.h / int2_format.cpp) ----------------------------------------------

inline constexpr float kMaxFloat = 0x1.fffffep127f;  // std::numeric_limits<float>::max()
inline constexpr float kMinRange = 1e-8f;
inline constexpr float kLloydMaxThreshold = 0.98107f;
inline constexpr float kLloydMaxScale = 1.16739f;
inline constexpr float kLloydMaxZero = 1.5f;

struct GroupParams {
  float scale;
  float zero;
};

/// minmax_group_params, operation for operation.
OSCAR_HD GroupParams minmax_params(float mn, float mx) {
  mn = add_rn(mn, 0.0f);
  GroupParams p;
  const float range = sub_rn(mx, mn);
  if (range <= kMaxFloat) {
    p.scale = div_rn(max_exact(range, kMinRange), 3.0f);
    p.zero = div_rn(-mn, p.scale);
    if (abs_exact(p.zero) <= kMaxFloat) return p;
  }
  p.scale = max_exact(sub_rn(div_rn(mx, 3.0f), div_rn(mn, 3.0f)),
                      div_rn(max_exact(abs_exact(mn), abs_exact(mx)), 3.0f));
  p.zero = div_rn(-mn, p.scale);
  return p;
}

OSCAR_HD std::uint8_t minmax_code(float v) {
  return std::uint8_t(int(v >= 1.0f) + int(v >= 2.0f) + int(v >= 3.0f));
}
OSCAR_HD std::uint8_t lloyd_max_code(float z) {
  return std::uint8_t(int(z >= -kLloydMaxThreshold) + int(z >= 0.0f) + int(z >= kLloydMaxThreshold));
}

/// group_sum of int2_format.cpp (the lane array is 32 floats of the calling thread).
OSCAR_HD float fixed_order_sum(const float* x, int n) {
  float lane[32];
  for (int j = 0; j < 32; ++j) lane[j] = 0.0f;
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int j = 0; j < 32; ++j) lane[j] = add_rn(lane[j], x[i + j]);
  }
  for (int j = 0; i + j < n; ++j) lane[j] = add_rn(lane[j], x[i + j]);
  for (int half = 16; half >= 1; half /= 2) {
    for (int j = 0; j < half; ++j) lane[j] = add_rn(lane[j], lane[j + half]);
  }
  return lane[0];
}

/// sum_squared_deviations of int2_format.cpp.
OSCAR_HD float fixed_order_squared_deviations(const float* x, int n, float mean) {
  float lane[32];
  for (int j = 0; j < 32; ++j) lane[j] = 0.0f;
  int i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int j = 0; j < 32; ++j) {
      const float dev = sub_rn(x[i + j], mean);
      lane[j] = add_rn(lane[j], mul_rn(dev, dev));
    }
  }
  for (int j = 0; i + j < n; ++j) {
    const float dev = sub_rn(x[i + j], mean);
    lane[j] = add_rn(lane[j], mul_rn(dev, dev));
  }
  for (int half = 16; half >= 1; half /= 2) {
    for (int j = 0; j < half; ++j) lane[j] = add_rn(lane[j], lane[j + half]);
  }
  return lane[0];
}

// ---- Errors: the smallest key wins, as the CPU reports the first offending row ------------------------

/// errors[0]: non-finite value, key (row << 10) | (element << 2) | kind (0 NaN, 1 +inf, 2 −inf);
/// errors[1]: Lloyd-Max overflow, key (row << 4) | group. Both start at ~0.
inline constexpr unsigned long long kNoError = ~0ull;

OSCAR_HD void report_error(unsigned long long* slot, unsigned long long key) {
#if defined(__CUDA_ARCH__)
  atomicMin(slot, key);
#else
  if (key < *slot) *slot = key;
#endif
}

// ---- The row --------------------------------------------------------------------------------------------

struct RowFormat {
  int head_dim;
  int group_size;
  int groups;
  int clip_index;       ///< −1: no clipping
  int sort_size;        ///< power of two ≥ head_dim (bitonic sort of the magnitudes)
  bool float16_scales;
  bool lloyd_max;
};

struct RowScratch {
  float staged[kMaxHeadDim];          ///< the input row as float32 (before rotation)
  float x[kMaxHeadDim];               ///< the row being quantised
  std::uint32_t sorted[kMaxHeadDim];  ///< magnitude bits, sorted ascending
  std::uint8_t codes[kMaxHeadDim];
  float scale[kMaxGroups];
  float zero[kMaxGroups];
  float mean[kMaxGroups];
  float sigma[kMaxGroups];
};

struct RowOutput {
  std::uint8_t* codes;  ///< packed_bytes of this row
  void* scales;         ///< groups scales of this row (float32 or float16 bits)
  void* zeros;
};

/// Quantises the row held in s.staged (float32, filled by the caller before a barrier) into `out`.
/// rotation: [d, d] row-major or nullptr; round_to_bf16: the rotated value is rounded to bfloat16 and widened
/// back (the value a bf16 cache stores, from which it later demotes). `row` only names errors.
template <typename Barrier>
OSCAR_HD void quantize_row(int tid, int nt, const RowFormat& f, const float* rotation, bool round_to_bf16,
                           RowScratch& s, RowOutput out, unsigned long long row, unsigned long long* errors,
                           Barrier barrier) {
  const int d = f.head_dim;
  // 0. rotation (i ascending, float32 products and sums), optional bf16 rounding, finiteness.
  for (int e = tid; e < d; e += nt) {
    float v;
    if (rotation != nullptr) {
      v = 0.0f;
      for (int i = 0; i < d; ++i) v = add_rn(v, mul_rn(s.staged[i], rotation[i * d + e]));
    } else {
      v = s.staged[e];
    }
    if (round_to_bf16) v = bf16_to_float(float_to_bf16(v));
    if (!is_finite(v)) {
      const unsigned long long kind = v != v ? 0ull : (v > 0.0f ? 1ull : 2ull);
      report_error(&errors[0], (row << 10) | (static_cast<unsigned long long>(e) << 2) | kind);
    }
    s.x[e] = v;
  }
  barrier();

  // 1. clip to ±τ, τ = the idx-th smallest |x| (bitonic sort of the magnitude bits, padded with ~0).
  if (f.clip_index >= 0) {
    const int n = f.sort_size;
    for (int e = tid; e < n; e += nt) s.sorted[e] = e < d ? (float_bits(s.x[e]) & 0x7fffffffu) : 0xffffffffu;
    barrier();
    for (int k = 2; k <= n; k <<= 1) {
      for (int j = k >> 1; j > 0; j >>= 1) {
        for (int i = tid; i < n; i += nt) {
          const int partner = i ^ j;
          if (partner > i) {
            const std::uint32_t a = s.sorted[i], b = s.sorted[partner];
            const bool ascending = (i & k) == 0;
            if ((a > b) == ascending) {
              s.sorted[i] = b;
              s.sorted[partner] = a;
            }
          }
        }
        barrier();
      }
    }
    const float tau = bits_float(s.sorted[f.clip_index]);
    for (int e = tid; e < d; e += nt) {
      float v = s.x[e];
      v = v < -tau ? -tau : v;
      v = v > tau ? tau : v;
      s.x[e] = v;
    }
    barrier();
  }

  // 2. per group: parameters (one thread per group, in the reference's order) and their storage.
  for (int g = tid; g < f.groups; g += nt) {
    const float* group = s.x + g * f.group_size;
    GroupParams p;
    if (!f.lloyd_max) {
      float mn = group[0], mx = group[0];
      for (int e = 1; e < f.group_size; ++e) {
        mn = min_exact(mn, group[e]);
        mx = max_exact(mx, group[e]);
      }
      p = minmax_params(mn, mx);
      s.mean[g] = 0.0f;
      s.sigma[g] = 1.0f;
    } else {
      const float count = float(f.group_size);
      const float mean = div_rn(fixed_order_sum(group, f.group_size), count);
      const float variance = div_rn(fixed_order_squared_deviations(group, f.group_size, mean), count);
      const float sigma = max_exact(sqrt_rn(variance), kMinRange);
      p.scale = mul_rn(kLloydMaxScale, sigma);
      p.zero = sub_rn(kLloydMaxZero, div_rn(mean, p.scale));
      if (!(abs_exact(mean) <= kMaxFloat && sigma <= kMaxFloat && p.scale <= kMaxFloat &&
            abs_exact(p.zero) <= kMaxFloat)) {
        report_error(&errors[1], (row << 4) | static_cast<unsigned long long>(g));
      }
      s.mean[g] = mean;
      s.sigma[g] = sigma;
    }
    s.scale[g] = p.scale;
    s.zero[g] = p.zero;
    if (f.float16_scales) {
      static_cast<std::uint16_t*>(out.scales)[g] = to_stored_float16_bits(p.scale);
      static_cast<std::uint16_t*>(out.zeros)[g] = to_stored_float16_bits(p.zero);
    } else {
      static_cast<float*>(out.scales)[g] = p.scale;
      static_cast<float*>(out.zeros)[g] = p.zero;
    }
  }
  barrier();

  // 3. codes (from the float32 parameters, whatever the storage type).
  for (int e = tid; e < d; e += nt) {
    const int g = e / f.group_size;
    s.codes[e] = f.lloyd_max ? lloyd_max_code(div_rn(sub_rn(s.x[e], s.mean[g]), s.sigma[g]))
                             : minmax_code(add_rn(add_rn(div_rn(s.x[e], s.scale[g]), s.zero[g]), 0.5f));
  }
  barrier();

  // 4. quartered packing: byte i holds elements i, i+d/4, i+d/2, i+3d/4.
  const int quarter = d / 4;
  for (int i = tid; i < quarter; i += nt) {
    out.codes[i] = std::uint8_t(s.codes[i] | s.codes[i + quarter] << 2 | s.codes[i + 2 * quarter] << 4 |
                                s.codes[i + 3 * quarter] << 6);
  }
}

}  // namespace oscar::runtime::gpu::detail
