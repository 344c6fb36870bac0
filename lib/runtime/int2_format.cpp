#include "runtime/int2_format.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/dtype.h"

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
  if (config.scale_type != ScaleType::kFloat32 && config.scale_type != ScaleType::kFloat16) {
    throw std::invalid_argument("INT2 scale type must be float32 or float16");
  }
  if (config.encoding != Encoding::kMinMax && config.encoding != Encoding::kLloydMax) {
    throw std::invalid_argument("INT2 encoding must be min-max or Lloyd-Max");
  }
}

Int2GroupParams minmax_group_params(float mn, float mx) {
  constexpr float kMaxFloat = std::numeric_limits<float>::max();
  mn = mn + 0.0f;  // −0.0 → +0.0; exact for every other value
  Int2GroupParams p;
  const float range = mx - mn;
  if (range <= kMaxFloat) {
    p.scale = std::max(range, int2_format::kMinRange) / 3.0f;
    p.zero = -mn / p.scale;
    if (std::fabs(p.zero) <= kMaxFloat) return p;
  }
  // Overflow (range beyond float32, or |mn|/scale beyond it for a constant group of huge values).
  p.scale = std::max(mx / 3.0f - mn / 3.0f, std::max(std::fabs(mn), std::fabs(mx)) / 3.0f);
  p.zero = -mn / p.scale;
  return p;
}

float group_sum(const float* x, int n) {
  constexpr int kLanes = 32;
  float lane[kLanes];
  for (int j = 0; j < kLanes; ++j) lane[j] = 0.0f;
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lane[j] += x[i + j];
  }
  for (int j = 0; i + j < n; ++j) lane[j] += x[i + j];
  for (int half = kLanes / 2; half >= 1; half /= 2) {
    for (int j = 0; j < half; ++j) lane[j] += lane[j + half];
  }
  return lane[0];
}

// The squared deviations must not be fused into their sum (a build with FMA would otherwise change bits).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
namespace {
float sum_squared_deviations(const float* x, int n, float mean) {
  constexpr int kLanes = 32;
  float lane[kLanes];
  for (int j = 0; j < kLanes; ++j) lane[j] = 0.0f;
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float dev = x[i + j] - mean;
      lane[j] += dev * dev;
    }
  }
  for (int j = 0; i + j < n; ++j) {
    const float dev = x[i + j] - mean;
    lane[j] += dev * dev;
  }
  for (int half = kLanes / 2; half >= 1; half /= 2) {
    for (int j = 0; j < half; ++j) lane[j] += lane[j + half];
  }
  return lane[0];
}
}  // namespace
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

LloydMaxStats lloyd_max_group_stats(const float* x, int n) {
  constexpr float kMaxFloat = std::numeric_limits<float>::max();
  LloydMaxStats s;
  const float count = float(n);
  s.mean = group_sum(x, n) / count;
  const float variance = sum_squared_deviations(x, n, s.mean) / count;
  s.sigma = std::max(std::sqrt(variance), int2_format::kMinRange);
  s.params.scale = int2_format::kLloydMaxScale * s.sigma;
  s.params.zero = int2_format::kLloydMaxZero - s.mean / s.params.scale;
  s.finite = std::fabs(s.mean) <= kMaxFloat && s.sigma <= kMaxFloat && s.params.scale <= kMaxFloat &&
             std::fabs(s.params.zero) <= kMaxFloat;
  return s;
}

std::uint16_t to_stored_float16(float value) {
  const std::uint16_t bits = float_to_float16(value);
  if ((bits & 0x7fffu) == 0x7c00u) return std::uint16_t((bits & 0x8000u) | 0x7bffu);  // ±inf → ±65504
  return bits;
}

}  // namespace oscar::runtime
