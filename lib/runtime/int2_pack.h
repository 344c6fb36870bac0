// Rotating and quantising whole tensors of KV rows, as a serving engine stores them: the job behind
// `oscar-int2 pack` and `unpack`, and the unit the benchmarks time.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/int2_format.h"
#include "runtime/rotation.h"

namespace oscar::runtime {

/// Rows [tokens, heads, d] in INT2: codes [tokens·heads, d/4], scales and zeros [tokens·heads, groups]
/// as float32 or float16 bits (config.scale_type), in the rotated basis.
struct PackedRows {
  Int2Config config;
  std::int64_t tokens = 0;
  int heads = 0;
  std::vector<std::uint8_t> codes;
  std::vector<std::uint8_t> scales;  ///< raw little-endian float32 or float16 values
  std::vector<std::uint8_t> zeros;

  std::int64_t rows() const { return tokens * heads; }
  std::size_t scale_bytes() const { return config.scale_type == ScaleType::kFloat16 ? 2 : 4; }
};

/// x·R (per head: row (t, h) uses rotation.matrix(h)), then quantised with the fast path.
/// x is [tokens, heads, d] float32. Throws std::invalid_argument on non-finite input or mismatched rotation.
PackedRows pack_rows(const float* x, std::int64_t tokens, int heads, const Rotation& rotation,
                     const Int2Config& config, int threads);

/// Dequantised rows [tokens, heads, d]; multiplied by Rᵀ (back to the original basis) unless the rotation is
/// the identity.
std::vector<float> unpack_rows(const PackedRows& packed, const Rotation& rotation, int threads);

}  // namespace oscar::runtime
