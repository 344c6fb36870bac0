#include "core/host_tensor.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace oscar {

namespace {

template <typename Bits>
Bits load_element(const std::uint8_t* base, std::int64_t i) {
  Bits value;
  std::memcpy(&value, base + std::size_t(i) * sizeof(Bits), sizeof(Bits));
  return value;
}

/// Lets a byte buffer be read as 16-bit words without breaking strict aliasing.
typedef std::uint16_t __attribute__((may_alias)) AliasedHalf;

/// bfloat16 -> double over a contiguous run, written so the compiler vectorises it (the hot path of
/// calibration: every activation passes through here once per pass).
void widen_bfloat16(const std::uint8_t* source, std::int64_t count, double* out) {
  const AliasedHalf* halves = reinterpret_cast<const AliasedHalf*>(source);
  for (std::int64_t i = 0; i < count; ++i) out[i] = bits_to_float(std::uint32_t(halves[i]) << 16);
}

}  // namespace

double HostTensor::element_as_double(std::int64_t i) const {
  const std::uint8_t* base = bytes.data();
  switch (dtype) {
    case DType::kFloat32: return load_element<float>(base, i);
    case DType::kFloat64: return load_element<double>(base, i);
    case DType::kFloat16: return float16_to_float(load_element<std::uint16_t>(base, i));
    case DType::kBFloat16: return bfloat16_to_float(load_element<std::uint16_t>(base, i));
    case DType::kInt32: return load_element<std::int32_t>(base, i);
    case DType::kInt64: return double(load_element<std::int64_t>(base, i));
    case DType::kUInt8: return base[i];
  }
  throw std::logic_error("unknown dtype");
}

void HostTensor::copy_to_double(std::int64_t first, std::int64_t count, double* out) const {
  const std::uint8_t* base = bytes.data();
  switch (dtype) {
    case DType::kBFloat16:
      widen_bfloat16(base + 2 * first, count, out);
      return;
    case DType::kFloat16:
      for (std::int64_t i = 0; i < count; ++i) out[i] = float16_to_float(load_element<std::uint16_t>(base, first + i));
      return;
    case DType::kFloat32:
      for (std::int64_t i = 0; i < count; ++i) out[i] = load_element<float>(base, first + i);
      return;
    default:
      for (std::int64_t i = 0; i < count; ++i) out[i] = element_as_double(first + i);
  }
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

}  // namespace oscar
