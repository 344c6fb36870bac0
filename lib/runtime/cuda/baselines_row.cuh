// The per-row arithmetic of the CUDA baselines (baselines_cuda.h) as the kernels in baselines.cu run it. Like
// quantize_row.cuh, the same code compiles for the host (plain C++, no CUDA headers needed): run with nt = 1 and
// a no-op barrier it executes the kernel's algorithm sequentially, which is how the tests check the kernels'
// arithmetic against the CPU classes (runtime/baseline_quantizers.h) on machines without a GPU.
//
// Bit-exactness with the CPU classes rests on:
//  - every operation is the CPU code's IEEE-754 operation, in float64 where the CPU computes in double (all of
//    TurboQuant, naive-sym's division and product) and float32 where it uses float, rounded to nearest even,
//    never contracted into an FMA: on the device the explicit __dadd_rn/__dsub_rn/__dmul_rn/__ddiv_rn/
//    __dsqrt_rn/__double2float_rn intrinsics (baselines.cu is also compiled with --fmad=false), on the host the
//    plain operators (oscar_runtime and the test target are compiled with -ffp-contract=off);
//  - the float16 rounding of scales and norms is the integer code of core/dtype.h (quantize_row.cuh) and the
//    widening back is exact;
//  - maxima are exact whatever their order (naive-sym's max|x|);
//  - TurboQuant's sum of squares is the CPU's sequential loop (one thread, i ascending); each Walsh–Hadamard
//    stage computes the CPU's butterflies (a + b, a − b on the values the previous stage left), and the result of
//    a stage does not depend on the order of its independent butterflies, only the stage order (half = 1, 2, 4,
//    … as walsh_hadamard) matters; the Lloyd–Max code is upper_bound over the host's thresholds (doubles copied
//    bit for bit), the level the host's double.
#pragma once

#include <cstdint>

#include "runtime/cuda/quantize_row.cuh"

namespace oscar::runtime::gpu::detail {

// ---- IEEE float64 operations, rounded to nearest, never fused -----------------------------------------------

OSCAR_HD double dadd_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
OSCAR_HD double dsub_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
OSCAR_HD double dmul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
OSCAR_HD double ddiv_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
OSCAR_HD double dsqrt_rn(double a) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(a);
#else
  return std::sqrt(a);
#endif
}
/// double -> float, round to nearest even (the C++ conversion float(x)).
OSCAR_HD float double_to_float_rn(double a) {
#if defined(__CUDA_ARCH__)
  return __double2float_rn(a);
#else
  return float(a);
#endif
}

/// IEEE binary16 bits -> float32, exact (core/dtype.h float16_to_float; the stored values are finite).
OSCAR_HD float float16_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  const std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_float(sign);
  const float magnitude = mul_rn(float(mantissa), 5.9604644775390625e-8f);  // mantissa·2^-24, exact
  return sign != 0 ? -magnitude : magnitude;
}

/// runtime::detail::stored_float16: float(value) rounded to the stored float16 (saturating) and widened back.
OSCAR_HD double stored_float16(double value) {
  return double(float16_bits_to_float(to_stored_float16_bits(double_to_float_rn(value))));
}

// ---- naive-sym ----------------------------------------------------------------------------------------------

/// The stored scale of a group whose max|x| is amax: stored_float16(amax / 1.5) (0: an all-zero group).
OSCAR_HD double naive_sym_scale(float amax) { return stored_float16(ddiv_rn(double(amax), 1.5)); }

/// One element against the stored scale s ≠ 0: u = x / s, q = [u ≥ −1] + [u ≥ 0] + [u ≥ 1], x̂ = float((q − 1.5)·s).
OSCAR_HD float naive_sym_value(float x, double s) {
  const double u = ddiv_rn(double(x), s);
  const int q = int(u >= -1.0) + int(u >= 0.0) + int(u >= 1.0);
  return double_to_float_rn(dmul_rn(dsub_rn(double(q), 1.5), s));
}

/// One group of n elements, sequentially (the host emulation of the kernel's warp per group).
inline void naive_sym_group_sequential(const float* x, int n, float* out) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = max_exact(amax, abs_exact(x[i]));
  const double s = naive_sym_scale(amax);
  for (int i = 0; i < n; ++i) out[i] = s == 0.0 ? 0.0f : naive_sym_value(x[i], s);
}

// ---- TurboQuant ---------------------------------------------------------------------------------------------

/// Block-shared values of one row besides the row itself.
struct TurboScratch {
  double norm;
  double stored_norm;
};

/// Constants of one launch (host-computed exactly as the CPU code computes them).
struct TurboParams {
  int d = 0;                            ///< a power of two
  double root_d = 0.0;                  ///< std::sqrt(double(d))
  double inv_root_d = 0.0;              ///< 1.0 / std::sqrt(double(d)) (walsh_hadamard's normalisation)
  const double* thresholds = nullptr;   ///< 2^bits − 1, ascending
  const double* levels = nullptr;       ///< 2^bits
  int threshold_count = 0;
};

/// GaussianLloydMax::encode (upper_bound over the thresholds; NaN → 0), then decode.
OSCAR_HD double lloyd_max_round(double y, const double* thresholds, const double* levels, int count) {
  if (y != y) return levels[0];
  int first = 0, n = count;
  while (n > 0) {  // std::upper_bound: the first threshold t with y < t
    const int half = n / 2;
    if (!(y < thresholds[first + half])) {
      first += half + 1;
      n -= half + 1;
    } else {
      n = half;
    }
  }
  return levels[first];
}

/// In-place unnormalised Walsh–Hadamard butterflies of walsh_hadamard (stages half = 1, 2, …, d/2), then the
/// normalisation x ← x·inv_root_d. Ends with a barrier.
template <typename Barrier>
OSCAR_HD void walsh_hadamard_block(int tid, int nt, double* y, int d, double inv_root_d, Barrier barrier) {
  for (int half = 1; half < d; half *= 2) {
    for (int p = tid; p < d / 2; p += nt) {
      const int i = ((p & ~(half - 1)) << 1) | (p & (half - 1));  // (p / half)·2·half + p % half
      const double a = y[i], b = y[i + half];
      y[i] = dadd_rn(a, b);
      y[i + half] = dsub_rn(a, b);
    }
    barrier();
  }
  for (int e = tid; e < d; e += nt) y[e] = dmul_rn(y[e], inv_root_d);
  barrier();
}

/// One TurboQuant row (runtime::turboquant_row followed by the float conversion of TurboQuantizer): x [d]
/// float32, signs [d] (±1, the head's RandomizedHadamard::signs()), y [d] block-shared scratch, out [d]. A
/// block of nt threads; every thread must call it.
template <typename Barrier>
OSCAR_HD void turboquant_row_block(int tid, int nt, const TurboParams& p, const float* x, const double* signs,
                                   double* y, TurboScratch& s, float* out, Barrier barrier) {
  const int d = p.d;
  for (int e = tid; e < d; e += nt) y[e] = double(x[e]);
  barrier();
  if (tid == 0) {
    double sum_squares = 0.0;
    for (int i = 0; i < d; ++i) sum_squares = dadd_rn(sum_squares, dmul_rn(y[i], y[i]));
    s.norm = dsqrt_rn(sum_squares);
    s.stored_norm = stored_float16(s.norm);
  }
  barrier();
  const double norm = s.norm;
  if (norm == 0.0) {
    for (int e = tid; e < d; e += nt) out[e] = 0.0f;
    barrier();  // y and s are reused by the next row
    return;
  }
  // y = Π·(x/n)·√d: x/n·√d, then D (signs), then H.
  for (int e = tid; e < d; e += nt) y[e] = dmul_rn(dmul_rn(ddiv_rn(y[e], norm), p.root_d), signs[e]);
  barrier();
  walsh_hadamard_block(tid, nt, y, d, p.inv_root_d, barrier);
  for (int e = tid; e < d; e += nt) y[e] = lloyd_max_round(y[e], p.thresholds, p.levels, p.threshold_count);
  barrier();
  // x̂ = Πᵀ·ŷ·(n_stored/√d): H, then D, then the scale.
  walsh_hadamard_block(tid, nt, y, d, p.inv_root_d, barrier);
  const double scale = ddiv_rn(s.stored_norm, p.root_d);
  for (int e = tid; e < d; e += nt) out[e] = double_to_float_rn(dmul_rn(dmul_rn(y[e], signs[e]), scale));
  barrier();
}

}  // namespace oscar::runtime::gpu::detail
