// The fast path of the INT2 format: the reference's arithmetic in the same order, written as loops GCC
// vectorises at plain -O3 (fixed-width lanes, branch-free selects, no reductions it would have to reorder),
// over contiguous row ranges on several threads. Bit-identical to int2_quantize.cpp's reference.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/parallel_for.h"
#include "runtime/int2_quantize.h"

namespace oscar::runtime {

namespace {

constexpr std::int64_t kMinRowsPerThread = 256;
constexpr int kLanes = 8;
constexpr std::uint32_t kExponentMask = 0x7f800000u;

/// Runs body(first, last) over contiguous row ranges covering [0, count).
template <typename Body>
void for_row_ranges(std::int64_t count, int threads, const Body& body) {
  if (count <= 0) return;
  const std::int64_t by_size = (count + kMinRowsPerThread - 1) / kMinRowsPerThread;
  const int chunks = int(std::max<std::int64_t>(1, std::min<std::int64_t>(threads < 1 ? 1 : threads, by_size)));
  if (chunks == 1) {
    body(std::int64_t(0), count);
    return;
  }
  parallel_for(chunks, chunks, [&](int chunk) { body(count * chunk / chunks, count * (chunk + 1) / chunks); });
}

struct Scratch {
  explicit Scratch(int d)
      : x(std::size_t(d)), magnitudes(std::size_t(d)), candidates(std::size_t(std::max(d, 32))), codes(std::size_t(d)) {}
  std::vector<float> x;
  std::vector<float> magnitudes, candidates;
  std::vector<std::int32_t> codes;
};

/// The k-th largest of the N values v (1 ≤ k ≤ number of values ≥ 0; padding is −1): the largest v[i] with
/// at least k values ≥ it. All ranks at once, as N×N compares in fixed-width loops that vectorise.
template <int N>
float kth_largest_small(const float* v, int k) {
  std::int32_t rank[N];
  for (int i = 0; i < N; ++i) rank[i] = 0;
  for (int j = 0; j < N; ++j) {
    const float vj = v[j];
    for (int i = 0; i < N; ++i) rank[i] += std::int32_t(vj >= v[i]);
  }
  constexpr int kWidth = 4;  // v[i] if it qualifies, else ±0 or −1: the maximum is the answer
  float best[kWidth] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int i = 0; i < N; i += kWidth) {
    for (int j = 0; j < kWidth; ++j) {
      const float qualifying = v[i + j] * float(rank[i + j] >= k);
      best[j] = qualifying > best[j] ? qualifying : best[j];
    }
  }
  return std::max(std::max(best[0], best[1]), std::max(best[2], best[3]));
}

/// The idx-th smallest of the d magnitudes |x| (non-negative floats; any exact selection gives the
/// reference's nth_element value). τ is the k-th largest, k = d − idx. For small k: the k-th largest of 16
/// strided block maxima is a lower bound of τ (k blocks each hold an element at least that large) that usually
/// few elements reach; τ is the k-th largest of those.
float select_magnitude(float* magnitudes, float* candidates, int d, int idx) {
  const int k = d - idx;
  constexpr int kBlocks = 16;
  if (k <= kBlocks && d % kBlocks == 0) {
    float block_max[kBlocks];
    for (int j = 0; j < kBlocks; ++j) block_max[j] = magnitudes[j];
    for (int e = kBlocks; e < d; e += kBlocks) {
      for (int j = 0; j < kBlocks; ++j) {
        const float v = magnitudes[e + j];
        block_max[j] = v > block_max[j] ? v : block_max[j];
      }
    }
    const float bound = kth_largest_small<kBlocks>(block_max, k);
    int n = 0;
    for (int e = 0; e < d; ++e) {
      candidates[n] = magnitudes[e];
      n += int(magnitudes[e] >= bound);
    }
    if (n <= 32) {  // n ≥ k
      for (int e = n; e < 32; ++e) candidates[e] = -1.0f;
      return n <= 16 ? kth_largest_small<16>(candidates, k) : kth_largest_small<32>(candidates, k);
    }
  }
  std::nth_element(magnitudes, magnitudes + idx, magnitudes + d);
  return magnitudes[idx];
}

/// Throws, naming the row and element, if any input is ±inf or NaN; the common all-finite case is one
/// branch-free pass over the exponent bits.
void check_finite_fast(const float* input, std::int64_t row, int d) {
  int non_finite = 0;
  for (int e = 0; e < d; ++e) {
    std::uint32_t bits;
    std::memcpy(&bits, input + e, sizeof bits);
    non_finite |= int((bits & kExponentMask) == kExponentMask);
  }
  if (!non_finite) return;
  for (int e = 0; e < d; ++e) {
    if (!std::isfinite(input[e])) detail::throw_non_finite(row, e, input[e]);
  }
}

/// The row clipped to ±τ, τ the magnitude at the clip index (in s.x), or the input itself when clipping is off.
const float* clip_row_fast(const float* input, const Int2Config& config, Scratch& s) {
  const int d = config.head_dim;
  const int idx = clip_index(config.clip_ratio, d);
  if (idx < 0) return input;
  float* magnitudes = s.magnitudes.data();
  for (int e = 0; e < d; ++e) magnitudes[e] = std::fabs(input[e]);
  const float tau = select_magnitude(magnitudes, s.candidates.data(), d, idx);
  const float neg_tau = -tau;
  float* clipped = s.x.data();
  for (int e = 0; e < d; ++e) {
    float v = input[e];
    v = v < neg_tau ? neg_tau : v;
    v = v > tau ? tau : v;
    clipped[e] = v;
  }
  return clipped;
}

/// Minimum and maximum of a group, in kLanes independent lanes when the size allows (min/max are exact, so
/// the lane order does not change the result).
void group_min_max(const float* group, int group_size, float* mn, float* mx) {
  if (group_size % kLanes != 0) {
    *mn = *mx = group[0];
    for (int e = 1; e < group_size; ++e) {
      *mn = std::min(*mn, group[e]);
      *mx = std::max(*mx, group[e]);
    }
    return;
  }
  float lane_min[kLanes], lane_max[kLanes];
  for (int j = 0; j < kLanes; ++j) lane_min[j] = lane_max[j] = group[j];
  for (int e = kLanes; e < group_size; e += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const float v = group[e + j];
      lane_min[j] = v < lane_min[j] ? v : lane_min[j];
      lane_max[j] = v > lane_max[j] ? v : lane_max[j];
    }
  }
  *mn = lane_min[0];
  *mx = lane_max[0];
  for (int j = 1; j < kLanes; ++j) {
    *mn = std::min(*mn, lane_min[j]);
    *mx = std::max(*mx, lane_max[j]);
  }
}

/// Asymmetric min/max codes of one group, rounding half up as three branch-free compares.
Int2GroupParams quantize_group_minmax(const float* group, int group_size, std::int32_t* codes) {
  float mn, mx;
  group_min_max(group, group_size, &mn, &mx);
  const Int2GroupParams params = minmax_group_params(mn, mx);
  const float scale = params.scale, zero = params.zero;
  for (int e = 0; e < group_size; ++e) {
    const float v = group[e] / scale + zero + 0.5f;
    codes[e] = std::int32_t(v >= 1.0f) + std::int32_t(v >= 2.0f) + std::int32_t(v >= 3.0f);
  }
  return params;
}

/// Lloyd-Max codes of one group: thresholds at −t, 0, t standard deviations from the mean.
Int2GroupParams quantize_group_lloyd_max(const float* group, int group_size, std::int64_t row, int g,
                                         std::int32_t* codes) {
  const LloydMaxStats stats = lloyd_max_group_stats(group, group_size);
  if (!stats.finite) detail::throw_lloyd_max_overflow(row, g);
  const float mean = stats.mean, sigma = stats.sigma;
  constexpr float t = int2_format::kLloydMaxThreshold;
  for (int e = 0; e < group_size; ++e) {
    const float z = (group[e] - mean) / sigma;
    codes[e] = std::int32_t(z >= -t) + std::int32_t(z >= 0.0f) + std::int32_t(z >= t);
  }
  return stats.params;
}

/// Quartered packing: byte i holds elements i, i + d/4, i + d/2, i + 3d/4 (lowest bits first).
void pack_quartered(const std::int32_t* codes, int d, std::uint8_t* packed) {
  const int quarter = d / 4;
  for (int i = 0; i < quarter; ++i) {
    packed[i] = std::uint8_t(codes[i] | codes[i + quarter] << 2 | codes[i + 2 * quarter] << 4 |
                             codes[i + 3 * quarter] << 6);
  }
}

void quantize_row_fast(const float* input, std::int64_t row, const Int2Config& config, Int2Rows out, Scratch& s) {
  check_finite_fast(input, row, config.head_dim);
  const float* x = clip_row_fast(input, config, s);
  const int group_size = config.group_size;
  std::int32_t* codes = s.codes.data();
  for (int g = 0; g < config.groups(); ++g) {
    const float* group = x + g * group_size;
    std::int32_t* group_codes = codes + g * group_size;
    const Int2GroupParams params = config.encoding == Encoding::kMinMax
                                       ? quantize_group_minmax(group, group_size, group_codes)
                                       : quantize_group_lloyd_max(group, group_size, row, g, group_codes);
    store_scale(out.scales, row * config.groups() + g, config.scale_type, params.scale);
    store_scale(out.zeros, row * config.groups() + g, config.scale_type, params.zero);
  }
  pack_quartered(codes, config.head_dim, out.codes + row * config.packed_bytes());
}

void dequantize_row_fast(const std::uint8_t* packed, const float* scales, const float* zeros,
                         const Int2Config& config, float* x) {
  const int d = config.head_dim, group_size = config.group_size, quarter = d / 4;
  for (int k = 0; k < 4; ++k) {
    const int shift = 2 * k;
    // Quarter k holds elements [k·q, (k+1)·q); cut it where groups change.
    for (int begin = k * quarter; begin < (k + 1) * quarter;) {
      const int g = begin / group_size;
      const int end = std::min((k + 1) * quarter, (g + 1) * group_size);
      const float scale = scales[g], zero = zeros[g];
      const std::uint8_t* bytes = packed + (begin - k * quarter);
      float* dst = x + begin;
      const int n = end - begin;
      for (int i = 0; i < n; ++i) dst[i] = (float((bytes[i] >> shift) & 3) - zero) * scale;
      begin = end;
    }
  }
}

}  // namespace

void quantize_rows(const float* rows, std::int64_t count, const Int2Config& config, Int2Rows out, int threads) {
  detail::check_arguments(rows, count, config, out.codes, out.scales, out.zeros, "INT2 quantize");
  for_row_ranges(count, threads, [&](std::int64_t first, std::int64_t last) {
    Scratch scratch(config.head_dim);
    for (std::int64_t r = first; r < last; ++r) quantize_row_fast(rows + r * config.head_dim, r, config, out, scratch);
  });
}

void dequantize_rows(ConstInt2Rows in, std::int64_t count, const Int2Config& config, float* rows, int threads) {
  detail::check_arguments(rows, count, config, in.codes, in.scales, in.zeros, "INT2 dequantize");
  const int groups = config.groups();
  for_row_ranges(count, threads, [&](std::int64_t first, std::int64_t last) {
    std::vector<float> scales(static_cast<std::size_t>(groups)), zeros(static_cast<std::size_t>(groups));
    for (std::int64_t r = first; r < last; ++r) {
      for (int g = 0; g < groups; ++g) {
        scales[g] = load_scale(in.scales, r * groups + g, config.scale_type);
        zeros[g] = load_scale(in.zeros, r * groups + g, config.scale_type);
      }
      dequantize_row_fast(in.codes + r * config.packed_bytes(), scales.data(), zeros.data(), config,
                          rows + r * config.head_dim);
    }
  });
}

}  // namespace oscar::runtime
