// The OSCAR INT2 KV-cache storage format (reference doc §5), bit for bit as the SGLang kernels store it.
//
// Per row x (one token of one KV head, d floats, already rotated):
//  1. clip: idx = clamp(int(ratio·d), 0, d−1) (ratio ≤ 0 disables); τ = sort(|x|)[idx]; x ← clamp(x, −τ, τ)
//  2. per group of G elements: mn, mx; scale = max(mx − mn, 1e-8) / 3; zero = −mn / scale (not rounded);
//     code = (uint8)(x / scale + zero + 0.5) clamped to [0, 3]  (round half up)
//  3. dequant: x̂ = (code − zero) · scale
//  4. quartered packing over the whole row whatever G: byte i holds elements i, i+d/4, i+d/2, i+3d/4 in
//     bits [1:0], [3:2], [5:4], [7:6]
//  5. scale and zero per group, stored as float32 (2.5 bits/element at G = d = 128) or float16 (2.25).
//     float16: scale, zero and the codes are computed in float32 exactly as for float32 storage; what is
//     stored is the float16 rounding of scale and zero (round to nearest even, saturating: to_stored_float16),
//     and dequantisation uses the stored values widened back to float32.
// Everything is float32 arithmetic in the order written (x / scale is a division), without fused multiply-add.
// Non-finite inputs (NaN, ±inf) are rejected. Overflow for huge values: see minmax_group_params.
// Lloyd-Max variant: z = (x − μ)/σ, code = [z ≥ −t] + [z ≥ 0] + [z ≥ t] (t = 0.98107), stored
// scale = 1.16739·σ, zero = 1.5 − μ/scale, so the same dequantisation formula applies.
#pragma once

#include <cstdint>

namespace oscar::runtime {

/// The format's constants, in one place.
namespace int2_format {
inline constexpr int kBitsPerCode = 2;
inline constexpr int kCodesPerByte = 4;
inline constexpr int kMaxCode = 3;
inline constexpr float kMinRange = 1e-8f;             ///< scale = max(mx − mn, kMinRange) / 3
inline constexpr double kDefaultKeyClipRatio = 0.96; ///< index 122 at d = 128
inline constexpr double kDefaultValueClipRatio = 0.92;///< index 117 at d = 128
inline constexpr float kLloydMaxThreshold = 0.98107f;
inline constexpr float kLloydMaxScale = 1.16739f;
inline constexpr float kLloydMaxZero = 1.5f;
}  // namespace int2_format

enum class ScaleType : std::uint8_t { kFloat32, kFloat16 };
enum class Encoding : std::uint8_t { kMinMax, kLloydMax };

struct Int2Config {
  int head_dim = 128;                     ///< d: a multiple of 4 (and of group_size)
  int group_size = 128;                   ///< G ∈ {d, 64, 32}
  double clip_ratio = 0.0;                ///< ≤ 0 disables; double, as Python computes int(ratio·d)
  ScaleType scale_type = ScaleType::kFloat32;
  Encoding encoding = Encoding::kMinMax;

  int groups() const { return head_dim / group_size; }
  int packed_bytes() const { return head_dim / int2_format::kCodesPerByte; }
  int scale_bytes() const { return scale_type == ScaleType::kFloat16 ? 2 : 4; }  ///< per scale (and per zero)
};

/// idx = clamp(int(ratio·d), 0, d−1), or −1 when clipping is disabled (ratio ≤ 0).
int clip_index(double ratio, int head_dim);

/// Throws std::invalid_argument unless d is a positive multiple of 4, G divides d and G ∈ {d, 64, 32}.
void validate(const Int2Config& config);

// ---- The per-group arithmetic, shared by every implementation (CPU reference, CPU fast path; the CUDA
// kernels mirror it). All float32, no fused multiply-add.

/// One group's scale and zero-point as computed in float32 (before any float16 storage rounding).
struct Int2GroupParams {
  float scale = 0.0f;
  float zero = 0.0f;
};

/// Min-max parameters from the group's min and max (after clipping; both finite, mn ≤ mx):
///   scale = max(mx − mn, 1e-8f) / 3.0f, zero = −mn / scale        (the kernels' formula, bit for bit)
/// A min of −0.0 counts as +0.0 (so zero = −0.0f then): which signed zero a min reduction returns depends on
/// its order, and this keeps every implementation's bytes equal.
/// Overflow, only for |x| beyond ~1e30 (where the kernels' formula gives inf/NaN): if mx − mn overflows to
/// inf (e.g. ±3e38), or −mn/scale does (a constant group with |x| > ~1.1e30), the fallback
///   scale = max(mx/3 − mn/3, max(|mn|, |mx|)/3), zero = −mn / scale
/// keeps scale and zero finite (zero ∈ [0, 3] for a range overflow, ±3 for a constant group), so every code
/// is well defined for every finite input, and dequantised values are finite for |x| ≤ 3.4e38 (within ~1e-6
/// of FLT_MAX the last rounding of (code − zero)·scale may still reach ±inf).
Int2GroupParams minmax_group_params(float mn, float mx);

/// code = (int)v clamped to [0, 3] (truncation toward zero, as CUDA's (int) cast and torch's .to(int32)),
/// with v = x / scale + zero + 0.5f computed in that order (division, then the two additions). Written as
/// [v ≥ 1] + [v ≥ 2] + [v ≥ 3], which equals the cast for every finite v and is defined for NaN (→ 0).
inline std::uint8_t minmax_code(float v) {
  return std::uint8_t(int(v >= 1.0f) + int(v >= 2.0f) + int(v >= 3.0f));
}

/// Lloyd-Max code from z = (x − μ)/σ: [z ≥ −t] + [z ≥ 0] + [z ≥ t], t = 0.98107f.
inline std::uint8_t lloyd_max_code(float z) {
  return std::uint8_t(int(z >= -int2_format::kLloydMaxThreshold) + int(z >= 0.0f) +
                      int(z >= int2_format::kLloydMaxThreshold));
}

/// Sum of n floats in a fixed order, so that every implementation gets the same bits: 32 strided partial sums
/// (lane j = 0.0f + x[j] + x[j+32] + …, left to right), then halved pairwise: lane j += lane j+16 for j < 16,
/// then += lane j+8, +4, +2, +1 (a warp's xor-shuffle reduction); lane 0 is the sum.
float group_sum(const float* x, int n);

/// Lloyd-Max statistics and parameters of one group (after clipping):
///   μ = group_sum(x)/n, σ = max(sqrtf(group_sum((x − μ)²)/n), 1e-8f) (population std),
///   scale = 1.16739f·σ, zero = 1.5f − μ/scale.
/// `finite` is false when they overflow float32 (|x − μ| beyond ~1.8e19, or a constant group with |x| beyond
/// ~4e30); quantisation then throws std::invalid_argument naming the row and group: the Lloyd-Max encoding has
/// no sane fallback there.
struct LloydMaxStats {
  float mean = 0.0f;
  float sigma = 0.0f;
  Int2GroupParams params;
  bool finite = true;
};
LloydMaxStats lloyd_max_group_stats(const float* x, int n);

/// Dequantisation: x̂ = (float(code) − zero) · scale, float32 (same formula for both encodings).
inline float dequantize_code(std::uint8_t code, float scale, float zero) { return (float(code) - zero) * scale; }

/// The float16 bits stored for a float32 scale or zero: round to nearest even (core/dtype.h float_to_float16),
/// except that values beyond the float16 range saturate to ±65504 instead of becoming ±inf (so dequantisation
/// never produces inf or NaN; such a group — range above ~2e5, or |zero| above 65504 as for a group of
/// same-sign values with a tiny spread, or a constant nonzero group — decodes inaccurately, but finitely).
/// A scale below ~3e-8 rounds to 0 (float16 has no smaller value), so such a group decodes to 0.
std::uint16_t to_stored_float16(float value);

}  // namespace oscar::runtime
