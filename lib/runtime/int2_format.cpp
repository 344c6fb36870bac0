#include "runtime/int2_format.h"

#include <stdexcept>
#include <string>

namespace oscar::runtime {

int clip_index(double ratio, int head_dim) {
  if (ratio <= 0.0) return -1;
  const int index = static_cast<int>(ratio * head_dim);
  return index < 0 ? 0 : (index > head_dim - 1 ? head_dim - 1 : index);
}

void validate(const Int2Config& config) {
  const int d = config.head_dim, g = config.group_size;
  if (d <= 0 || d % int2_format::kCodesPerByte != 0) {
    throw std::invalid_argument("INT2 head_dim must be a positive multiple of 4, got " + std::to_string(d));
  }
  if (!(g == d || g == 64 || g == 32) || g > d || d % g != 0) {
    throw std::invalid_argument("INT2 group size must be head_dim, 64 or 32 and divide head_dim, got " + std::to_string(g));
  }
}

}  // namespace oscar::runtime
