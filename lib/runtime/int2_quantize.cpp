// The scalar reference of the INT2 format (int2_format.h), written to read like the spec, plus the packing
// and scale-storage helpers both implementations use.
#include "runtime/int2_quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace oscar::runtime {

void pack_codes(const std::uint8_t* codes, int head_dim, std::uint8_t* packed) {
  const int quarter = head_dim / 4;
  for (int i = 0; i < quarter; ++i) {
    packed[i] = std::uint8_t((codes[i] & 3u) | (codes[i + quarter] & 3u) << 2 | (codes[i + 2 * quarter] & 3u) << 4 |
                             (codes[i + 3 * quarter] & 3u) << 6);
  }
}

void unpack_codes(const std::uint8_t* packed, int head_dim, std::uint8_t* codes) {
  const int quarter = head_dim / 4;
  for (int i = 0; i < quarter; ++i) {
    for (int k = 0; k < 4; ++k) codes[i + k * quarter] = std::uint8_t((packed[i] >> (2 * k)) & 3u);
  }
}

float load_scale(const void* values, std::int64_t index, ScaleType type) {
  if (type == ScaleType::kFloat16) {
    std::uint16_t bits;
    std::memcpy(&bits, static_cast<const unsigned char*>(values) + index * 2, sizeof bits);
    return float16_to_float(bits);
  }
  float value;
  std::memcpy(&value, static_cast<const unsigned char*>(values) + index * 4, sizeof value);
  return value;
}

void store_scale(void* values, std::int64_t index, ScaleType type, float value) {
  if (type == ScaleType::kFloat16) {
    const std::uint16_t bits = to_stored_float16(value);
    std::memcpy(static_cast<unsigned char*>(values) + index * 2, &bits, sizeof bits);
  } else {
    std::memcpy(static_cast<unsigned char*>(values) + index * 4, &value, sizeof value);
  }
}

namespace detail {

void check_arguments(const void* rows, std::int64_t count, const Int2Config& config, const void* codes,
                     const void* scales, const void* zeros, const char* what) {
  validate(config);
  if (count < 0) throw std::invalid_argument(std::string(what) + ": negative row count " + std::to_string(count));
  if (count > 0 && (rows == nullptr || codes == nullptr || scales == nullptr || zeros == nullptr)) {
    throw std::invalid_argument(std::string(what) + ": null buffer for " + std::to_string(count) + " rows");
  }
}

[[noreturn]] void throw_non_finite(std::int64_t row, int element, float value) {
  const char* name = std::isnan(value) ? "NaN" : (value > 0 ? "+inf" : "-inf");
  throw std::invalid_argument("INT2 quantize: row " + std::to_string(row) + ", element " + std::to_string(element) +
                              " is " + name + " (input must be finite)");
}

void throw_lloyd_max_overflow(std::int64_t row, int group) {
  throw std::invalid_argument("INT2 quantize: row " + std::to_string(row) + ", group " + std::to_string(group) +
                              ": values too large for the Lloyd-Max encoding (its mean, standard deviation, "
                              "scale or zero-point overflow float32)");
}

}  // namespace detail

namespace {

/// One row: clip, per-group parameters and codes, packing, storage.
void quantize_row_reference(const float* input, std::int64_t row, const Int2Config& config, Int2Rows out) {
  const int d = config.head_dim, group_size = config.group_size;
  std::vector<float> x(input, input + d);
  for (int e = 0; e < d; ++e) {
    if (!std::isfinite(x[e])) detail::throw_non_finite(row, e, x[e]);
  }

  // 1. clip to ±τ, τ = the idx-th smallest |x|.
  const int idx = clip_index(config.clip_ratio, d);
  if (idx >= 0) {
    std::vector<float> magnitudes(d);
    for (int e = 0; e < d; ++e) magnitudes[e] = std::fabs(x[e]);
    std::nth_element(magnitudes.begin(), magnitudes.begin() + idx, magnitudes.end());
    const float tau = magnitudes[idx];
    for (int e = 0; e < d; ++e) {
      x[e] = x[e] < -tau ? -tau : x[e];  // clamp(x, −τ, τ)
      x[e] = x[e] > tau ? tau : x[e];
    }
  }

  // 2. per group: scale, zero, codes.
  std::vector<std::uint8_t> codes(d);
  for (int g = 0; g < config.groups(); ++g) {
    const float* group = x.data() + g * group_size;
    std::uint8_t* group_codes = codes.data() + g * group_size;
    Int2GroupParams params;
    if (config.encoding == Encoding::kMinMax) {
      float mn = group[0], mx = group[0];
      for (int e = 1; e < group_size; ++e) {
        mn = std::min(mn, group[e]);
        mx = std::max(mx, group[e]);
      }
      params = minmax_group_params(mn, mx);
      for (int e = 0; e < group_size; ++e) group_codes[e] = minmax_code(group[e] / params.scale + params.zero + 0.5f);
    } else {
      const LloydMaxStats stats = lloyd_max_group_stats(group, group_size);
      if (!stats.finite) detail::throw_lloyd_max_overflow(row, g);
      params = stats.params;
      for (int e = 0; e < group_size; ++e) group_codes[e] = lloyd_max_code((group[e] - stats.mean) / stats.sigma);
    }
    // 5. storage (float16: rounded after the codes were computed from the float32 values).
    store_scale(out.scales, row * config.groups() + g, config.scale_type, params.scale);
    store_scale(out.zeros, row * config.groups() + g, config.scale_type, params.zero);
  }

  // 4. quartered packing over the whole row.
  pack_codes(codes.data(), d, out.codes + row * config.packed_bytes());
}

}  // namespace

void quantize_rows_reference(const float* rows, std::int64_t count, const Int2Config& config, Int2Rows out) {
  detail::check_arguments(rows, count, config, out.codes, out.scales, out.zeros, "INT2 quantize");
  for (std::int64_t r = 0; r < count; ++r) quantize_row_reference(rows + r * config.head_dim, r, config, out);
}

void dequantize_rows_reference(ConstInt2Rows in, std::int64_t count, const Int2Config& config, float* rows) {
  detail::check_arguments(rows, count, config, in.codes, in.scales, in.zeros, "INT2 dequantize");
  const int d = config.head_dim;
  std::vector<std::uint8_t> codes(d);
  for (std::int64_t r = 0; r < count; ++r) {
    unpack_codes(in.codes + r * config.packed_bytes(), d, codes.data());
    for (int e = 0; e < d; ++e) {
      const std::int64_t g = r * config.groups() + e / config.group_size;
      const float scale = load_scale(in.scales, g, config.scale_type);
      const float zero = load_scale(in.zeros, g, config.scale_type);
      rows[r * d + e] = dequantize_code(codes[e], scale, zero);
    }
  }
}

}  // namespace oscar::runtime
