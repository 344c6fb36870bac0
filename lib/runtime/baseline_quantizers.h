// The KV quantizers of kv_quantizer.h, one class per method, and the pieces the tests check on their own.
// All of them read float32 rows [tokens, heads, d], compute in double where sums or transforms are involved,
// write float32, and count every stored bit. float16 means IEEE binary16, round to nearest even, saturating at
// ±65504 (to_stored_float16 of int2_format.h). Randomness (TurboQuant's signs) comes from std::mt19937_64
// bits with fixed seeds only.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/int2_format.h"
#include "runtime/kv_quantizer.h"
#include "runtime/lloyd_max.h"

namespace oscar::runtime {

/// "naive-sym" (the OSCAR paper's naive INT2): per row, groups of G elements (G = d by default), no rotation.
/// s = max|x| / (3/2), stored float16; code q ∈ {0..3} is the nearest of the mid-rise levels (q − 3/2)·s,
/// i.e. {−3/2, −1/2, +1/2, +3/2}·s, chosen against the stored s (what is read back), so the extremes are
/// exact up to the float16 rounding of s. No zero level: a symmetric 2-bit code that keeps 0 as a level has
/// only 3 usable levels (−s, 0, +s; some implementations do that); the 4-level mid-rise set uses all four.
/// Bits per group: 2·G + 16.
class NaiveSymmetricQuantizer final : public KvQuantizer {
 public:
  explicit NaiveSymmetricQuantizer(int group_size) : group_size_(group_size) {}  ///< 0: G = d
  double reconstruct(const float* rows, int tokens, int heads, int d, float* out) const override;

 private:
  int group_size_;
};

/// "naive-asym" and "quarot": exactly the OSCAR INT2 format (int2_quantize.h: clip, asymmetric min-max or
/// Lloyd-Max, scale type), without rotation, or after the normalised Walsh–Hadamard rotation x·H and rotated
/// back (x̂·Hᵀ) when read. Bits per row: int2_bits_per_element · d.
class Int2FormatQuantizer final : public KvQuantizer {
 public:
  /// config's clip ratio, scale type and encoding are used; head_dim and group_size come from d and group_size
  /// (0: d). hadamard needs d a power of two.
  Int2FormatQuantizer(const Int2Config& config, int group_size, bool hadamard)
      : config_(config), group_size_(group_size), hadamard_(hadamard) {}
  double reconstruct(const float* rows, int tokens, int heads, int d, float* out) const override;

 private:
  Int2Config config_;
  int group_size_;
  bool hadamard_;
};

/// "kivi2" (Liu et al. 2024, KIVI), at `bits` bits (2 for the named method). Asymmetric min-max groups:
/// scale = (max − min)/(2^b − 1) and the group minimum (KIVI's zero-point), both stored float16; code =
/// round((x − min)/scale) (ties to even) clamped to [0, 2^b − 1] against the stored values; x̂ = code·scale + min.
///   keys:   per channel, over groups of `group` consecutive tokens (granule() = group: outlier channels get
///           their own range, which is KIVI's point); bits per (head, channel, token group): b·group + 32.
///   values: per token, over groups of min(group, d) channels; bits per (row, channel group): b·G + 32.
/// The full-precision residual of recent tokens is the caller's recent window.
class KiviQuantizer final : public KvQuantizer {
 public:
  KiviQuantizer(KvKind kind, int group, int bits) : kind_(kind), group_(group), bits_(bits) {}
  double reconstruct(const float* rows, int tokens, int heads, int d, float* out) const override;
  int granule() const override { return kind_ == KvKind::kKey ? group_ : 1; }

 private:
  KvKind kind_;
  int group_;
  int bits_;
};

/// Normalised Walsh–Hadamard transform in place: x ← H x with H[i][j] = (−1)^popcount(i & j) / √d (Sylvester
/// order, the reference doc's H; symmetric and orthonormal, so it is its own inverse). d a power of two.
void walsh_hadamard(double* x, int d);
bool is_power_of_two(int d);

/// TurboQuant's random rotation Π = H·D: D a diagonal of random signs (std::mt19937_64 bits of `seed`, one bit
/// per coordinate), then the normalised Walsh–Hadamard H. Orthogonal, data-free, O(d log d).
class RandomizedHadamard {
 public:
  RandomizedHadamard(int d, std::uint64_t seed);
  void forward(double* x) const;  ///< x ← Π x
  void inverse(double* y) const;  ///< y ← Πᵀ y
  const std::vector<double>& signs() const { return signs_; }  ///< D's diagonal, ±1

 private:
  std::vector<double> signs_;
};

/// The seed of head h's rotation, derived from the options' seed (splitmix64 of seed + h).
std::uint64_t head_seed(std::uint64_t seed, int head);

/// One TurboQuant row (MSE variant): n = ‖x‖ (stored float16), y = Π·(x/n)·√d, whose coordinates are close to
/// N(0, 1); each coded by the Gaussian Lloyd–Max quantizer; read back x̂ = n_stored/√d · Πᵀ·ŷ. A zero row
/// reads back as 0. Returns the bits stored: b·d + 16.
double turboquant_row(const double* x, int d, const RandomizedHadamard& pi, const GaussianLloydMax& codebook,
                      double* out);

/// "turboquant" (Zandieh et al. 2025, TurboQuant), MSE variant: turboquant_row on every row, head h using
/// RandomizedHadamard(d, head_seed(seed, h)). The paper's inner-product variant spends one of the b bits on a
/// 1-bit QJL sketch of the residual (unbiased q·k); attention here reads back one vector per token, for which
/// the MSE variant is the one that applies. d must be a power of two. Bits per row: b·d + 16.
class TurboQuantizer final : public KvQuantizer {
 public:
  TurboQuantizer(int bits, std::uint64_t seed) : codebook_(bits), seed_(seed) {}
  double reconstruct(const float* rows, int tokens, int heads, int d, float* out) const override;

 private:
  GaussianLloydMax codebook_;
  std::uint64_t seed_;
};

/// eOptShrinkQ's low-rank part of one head's segment X [T, d] (low_rank.h): rank r from the BBP threshold
/// (capped at max_rank when > 0), stored as balanced float16 factors a_i = √η_i·u_i (T values) and
/// b_i = √η_i·v_i (d values), so L = Σ a_i b_iᵀ; 16·r·(T + d) bits.
struct LowRankPart {
  int rank = 0;
  double sigma = 0.0;                       ///< the estimated noise level
  std::vector<std::vector<float>> a, b;     ///< the stored (float16-rounded) factors
  std::vector<double> product;              ///< L = Σ a_i b_iᵀ, [T, d] row-major
  double bits() const;
};
LowRankPart shrinkage_low_rank(const double* x, int tokens, int d, int max_rank);

/// "eoptshrinkq": per head, X [T, d] over the whole segment (whole_sequence()): the low-rank part above,
/// then the residual X − L (against the stored factors) coded row by row by TurboQuant at residual_bits;
/// read back L + residual. Bits: 16·r·(T + d) + T·(b·d + 16) per head.
class EOptShrinkQuantizer final : public KvQuantizer {
 public:
  EOptShrinkQuantizer(int residual_bits, std::uint64_t seed, int max_rank)
      : codebook_(residual_bits), seed_(seed), max_rank_(max_rank) {}
  double reconstruct(const float* rows, int tokens, int heads, int d, float* out) const override;
  bool whole_sequence() const override { return true; }

 private:
  GaussianLloydMax codebook_;
  std::uint64_t seed_;
  int max_rank_;
};

namespace detail {
/// Throws std::invalid_argument unless tokens ≥ 0, heads ≥ 1, d ≥ 1, pointers non-null when tokens > 0, and
/// every input is finite (naming `method` and the first bad element).
void check_rows(const float* rows, int tokens, int heads, int d, const float* out, const char* method);
/// The float16 a value is stored as, widened back (to_stored_float16).
float stored_float16(double value);
/// The group size naive-sym uses (0: d); throws std::invalid_argument naming `method` unless it divides d.
int resolve_group(int group_size, int d, const char* method);
}  // namespace detail

}  // namespace oscar::runtime
