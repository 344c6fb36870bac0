// Storage cost of the mixed KV cache (reference doc §6): sink and recent tokens at 16 bits, the rest in
// INT2 with a scale and a zero per group. (320·16 + (L − 320)·2.25) / L = 2.28 at L = 128K with 16-bit
// scales and G = d = 128; 2.53 with float32 scales.
#pragma once

#include <cstdint>

#include "runtime/int2_format.h"

namespace oscar::runtime {

struct CacheLayout {
  std::int64_t sink_tokens = 64;
  std::int64_t recent_tokens = 256;   ///< W: the window holds W..W+7; the table counts W, as the paper does
  int full_precision_bits = 16;
};

/// Bits per element of the INT2 segment: 2 + 2·(scale bits)/G.
double int2_bits_per_element(const Int2Config& config);

/// Average bits per element over a context of `context` tokens.
double cache_bits_per_element(std::int64_t context, const CacheLayout& layout, const Int2Config& config);

}  // namespace oscar::runtime
