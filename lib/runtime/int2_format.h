// The OSCAR INT2 KV-cache storage format (reference doc §5), bit for bit as the SGLang kernels store it.
//
// Per row x (one token of one KV head, d floats, already rotated):
//  1. clip: idx = clamp(int(ratio·d), 0, d−1) (ratio ≤ 0 disables); τ = sort(|x|)[idx]; x ← clamp(x, −τ, τ)
//  2. per group of G elements: mn, mx; scale = max(mx − mn, 1e-8) / 3; zero = −mn / scale (not rounded);
//     code = (uint8)(x / scale + zero + 0.5) clamped to [0, 3]  (round half up)
//  3. dequant: x̂ = (code − zero) · scale
//  4. quartered packing over the whole row whatever G: byte i holds elements i, i+d/4, i+d/2, i+3d/4 in
//     bits [1:0], [3:2], [5:4], [7:6]
//  5. scale and zero per group, stored as float32 (2.5 bits/element at G = d = 128) or float16 (2.25)
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
};

/// idx = clamp(int(ratio·d), 0, d−1), or −1 when clipping is disabled (ratio ≤ 0).
int clip_index(double ratio, int head_dim);

/// Throws std::invalid_argument unless d is a positive multiple of 4, G divides d and G ∈ {d, 64, 32}.
void validate(const Int2Config& config);

}  // namespace oscar::runtime
