// Element types of activation tensors and their bit-exact conversions.
//
// Dumps hold bfloat16, float16 or float32. Conversions are written out here (no compiler _Float16) so the
// result is the same on every compiler and CPU: IEEE-754 binary16 and bfloat16, round-to-nearest-even when
// narrowing.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace oscar {

enum class DType : std::uint8_t { kFloat32, kFloat16, kBFloat16, kFloat64, kInt32, kInt64, kUInt8 };

/// Bytes per element.
inline std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::kUInt8: return 1;
    case DType::kFloat16:
    case DType::kBFloat16: return 2;
    case DType::kFloat32:
    case DType::kInt32: return 4;
    case DType::kFloat64:
    case DType::kInt64: return 8;
  }
  return 0;
}

/// Lower-case name as PyTorch prints it ("bfloat16", "float16", ...).
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
    case DType::kFloat64: return "float64";
    case DType::kInt32: return "int32";
    case DType::kInt64: return "int64";
    case DType::kUInt8: return "uint8";
  }
  return "?";
}

inline float bits_to_float(std::uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

inline std::uint32_t float_to_bits(float f) {
  std::uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

/// bfloat16 is the upper half of a float32: widening is exact.
inline float bfloat16_to_float(std::uint16_t h) { return bits_to_float(std::uint32_t(h) << 16); }

/// IEEE binary16 -> float32, exact (subnormals, infinities and NaN preserved).
inline float float16_to_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_to_float(sign);
  // Subnormal half: value = mantissa * 2^-24, exactly representable as a normal float.
  const float magnitude = float(mantissa) * 5.9604644775390625e-8f;
  return sign ? -magnitude : magnitude;
}

/// float32 -> IEEE binary16, round to nearest even; overflow gives infinity, NaN stays NaN.
inline std::uint16_t float_to_float16(float f) {
  const std::uint32_t bits = float_to_bits(f);
  const std::uint16_t sign = std::uint16_t((bits >> 16) & 0x8000u);
  const std::uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits >= 0x7f800000u) return sign | 0x7c00u | (abs_bits > 0x7f800000u ? 0x200u : 0u);
  if (abs_bits >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: infinity
  if (abs_bits < 0x38800000u) {                          // below the smallest normal half (2^-14)
    if (abs_bits < 0x33000000u) return sign;             // below half the smallest subnormal
    const std::uint32_t exponent = abs_bits >> 23;
    const std::uint32_t mantissa = (abs_bits & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126u - exponent;  // brings the value to units of 2^-24
    std::uint32_t result = mantissa >> shift;
    const std::uint32_t remainder = mantissa & ((1u << shift) - 1u);
    const std::uint32_t halfway = 1u << (shift - 1u);
    if (remainder > halfway || (remainder == halfway && (result & 1u))) ++result;
    return sign | std::uint16_t(result);
  }
  std::uint32_t rebased = abs_bits - 0x38000000u;  // exponent bias 127 -> 15
  const std::uint32_t remainder = rebased & 0x1fffu;
  rebased >>= 13;
  if (remainder > 0x1000u || (remainder == 0x1000u && (rebased & 1u))) ++rebased;
  return sign | std::uint16_t(rebased);
}

/// float32 -> bfloat16, round to nearest even; NaN stays NaN.
inline std::uint16_t float_to_bfloat16(float f) {
  const std::uint32_t bits = float_to_bits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((bits >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return std::uint16_t((bits + rounding) >> 16);
}

}  // namespace oscar
