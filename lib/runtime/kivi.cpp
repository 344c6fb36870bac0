// KIVI (baseline_quantizers.h): asymmetric min-max groups, keys per channel over token groups, values per
// token over channel groups.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "runtime/baseline_quantizers.h"

namespace oscar::runtime {
namespace {

/// One group of n elements, element i at x[i·stride] (and out[i·stride]); returns its bits (b·n + 32).
double minmax_group(const float* x, std::size_t stride, int n, int bits, float* out) {
  float mn = x[0], mx = x[0];
  for (int i = 1; i < n; ++i) {
    mn = std::min(mn, x[i * stride]);
    mx = std::max(mx, x[i * stride]);
  }
  const int max_code = (1 << bits) - 1;
  const double scale = detail::stored_float16((double(mx) - mn) / max_code);
  const double offset = detail::stored_float16(mn);  // KIVI's zero-point is the group minimum itself
  for (int i = 0; i < n; ++i) {
    double code = 0.0;  // a constant group (scale 0) reads back its minimum
    if (scale > 0.0) {  // nearbyint: ties to even, as torch.round in KIVI's code
      code = std::fmin(std::fmax(std::nearbyint((x[i * stride] - offset) / scale), 0.0), max_code);
    }
    out[i * stride] = float(code * scale + offset);
  }
  return double(bits) * n + 32.0;
}

}  // namespace

double KiviQuantizer::reconstruct(const float* rows, int tokens, int heads, int d, float* out) const {
  detail::check_rows(rows, tokens, heads, d, out, "kivi");
  if (bits_ < 1 || bits_ > 8 || group_ < 1) {
    throw std::invalid_argument("kivi: bits must be 1..8 and the group positive, got " + std::to_string(bits_) +
                                " and " + std::to_string(group_));
  }
  const std::size_t row_stride = std::size_t(heads) * d;
  double bits = 0.0;
  if (kind_ == KvKind::kKey) {
    if (tokens % group_ != 0) {
      throw std::invalid_argument("kivi keys: tokens (" + std::to_string(tokens) + ") must be a multiple of the group (" +
                                  std::to_string(group_) + ")");
    }
    for (int t0 = 0; t0 < tokens; t0 += group_) {
      for (std::size_t c = 0; c < row_stride; ++c) {  // every (head, channel)
        const std::size_t at = std::size_t(t0) * row_stride + c;
        bits += minmax_group(rows + at, row_stride, group_, bits_, out + at);
      }
    }
    return bits;
  }
  const int g = std::min(group_, d);
  if (d % g != 0) {
    throw std::invalid_argument("kivi values: the channel group " + std::to_string(g) + " must divide d = " + std::to_string(d));
  }
  const std::size_t groups = std::size_t(tokens) * heads * (d / g);
  for (std::size_t i = 0; i < groups; ++i) bits += minmax_group(rows + i * g, 1, g, bits_, out + i * g);
  return bits;
}

}  // namespace oscar::runtime
