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

/// Quartered packing of one row's d codes (each 0..3) into d/4 bytes: byte i = c[i] | c[i+d/4] << 2 |
/// c[i+d/2] << 4 | c[i+3d/4] << 6. unpack_codes is its inverse.
void pack_codes(const std::uint8_t* codes, int head_dim, std::uint8_t* packed);
void unpack_codes(const std::uint8_t* packed, int head_dim, std::uint8_t* codes);

/// Scale or zero number `index` of a scales/zeros array stored as config.scale_type, widened to float32
/// (the value dequantisation uses); store_scale writes one (float16: to_stored_float16). Unaligned-safe.
float load_scale(const void* values, std::int64_t index, ScaleType type);
void store_scale(void* values, std::int64_t index, ScaleType type, float value);

/// Both implementations: rows is count·d float32 (row r at rows + r·d); row r's output is codes +
/// r·packed_bytes(), scales/zeros element r·groups() + g. Throws std::invalid_argument for an invalid config,
/// count < 0, null pointers with count > 0, or a non-finite input value (the message names the first such
/// row and its first such element, the same for both; other rows may already be written). Lloyd-Max may also
/// throw on overflow (LloydMaxStats::finite). Input values are not modified (clipping works on a copy).
///
/// Scalar reference, written like the spec.
void quantize_rows_reference(const float* rows, std::int64_t count, const Int2Config& config, Int2Rows out);
void dequantize_rows_reference(ConstInt2Rows in, std::int64_t count, const Int2Config& config, float* rows);

/// Fast path with `threads` threads (≤ 0 means 1; at most one thread per 256 rows, each thread a contiguous
/// range of rows); bit-identical to the reference for every thread count.
void quantize_rows(const float* rows, std::int64_t count, const Int2Config& config, Int2Rows out, int threads);
void dequantize_rows(ConstInt2Rows in, std::int64_t count, const Int2Config& config, float* rows, int threads);

/// Shared by the two implementations (not for callers).
namespace detail {
void check_arguments(const void* rows, std::int64_t count, const Int2Config& config, const void* codes,
                     const void* scales, const void* zeros, const char* what);
[[noreturn]] void throw_non_finite(std::int64_t row, int element, float value);
[[noreturn]] void throw_lloyd_max_overflow(std::int64_t row, int group);
}  // namespace detail

}  // namespace oscar::runtime
