#include "runtime/bits_per_element.h"

#include <algorithm>

namespace oscar::runtime {

double int2_bits_per_element(const Int2Config& config) {
  const int scale_bits = config.scale_type == ScaleType::kFloat16 ? 16 : 32;
  return int2_format::kBitsPerCode + 2.0 * scale_bits / config.group_size;  // scale and zero per group
}

double cache_bits_per_element(std::int64_t context, const CacheLayout& layout, const Int2Config& config) {
  if (context <= 0) return 0.0;
  const std::int64_t full = std::min(context, layout.sink_tokens + layout.recent_tokens);
  const double bits = double(full) * layout.full_precision_bits + double(context - full) * int2_bits_per_element(config);
  return bits / double(context);
}

}  // namespace oscar::runtime
