// Quantising rows to the INT2 format (int2_format.h) and back. Two implementations of the same contract:
// a scalar reference that reads like the spec, and a fast path (vectorisable loops, several threads) that
// must produce the same bytes, scales and zeros.
#pragma once

#include <cstdint>

#include "runtime/int2_format.h"

namespace oscar::runtime {

/// Where the quantised rows live: `rows` rows of packed codes (packed_bytes() each) and of groups()
/// scales and zeros each. Scales/zeros are float32 or IEEE float16 bits (uint16) per config.scale_type.
struct Int2Rows {
  std::uint8_t* codes = nullptr;
  void* scales = nullptr;
  void* zeros = nullptr;
};

struct ConstInt2Rows {
  const std::uint8_t* codes = nullptr;
  const void* scales = nullptr;
  const void* zeros = nullptr;
};

/// Scalar reference. Throws std::invalid_argument for a non-finite input value.
void quantize_rows_reference(const float* rows, std::int64_t count, const Int2Config& config, Int2Rows out);
void dequantize_rows_reference(ConstInt2Rows in, std::int64_t count, const Int2Config& config, float* rows);

/// Fast path with `threads` threads; bit-identical to the reference.
void quantize_rows(const float* rows, std::int64_t count, const Int2Config& config, Int2Rows out, int threads);
void dequantize_rows(ConstInt2Rows in, std::int64_t count, const Int2Config& config, float* rows, int threads);

}  // namespace oscar::runtime
