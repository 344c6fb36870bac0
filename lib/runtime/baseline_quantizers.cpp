// naive-sym and the INT2-format methods (naive-asym, quarot), plus what all methods share. KIVI, TurboQuant and
// eOptShrinkQ live in kivi.cpp, turboquant.cpp and eoptshrinkq.cpp.
#include "runtime/baseline_quantizers.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "runtime/bits_per_element.h"
#include "runtime/int2_quantize.h"

namespace oscar::runtime {

namespace detail {

void check_rows(const float* rows, int tokens, int heads, int d, const float* out, const char* method) {
  const std::string name(method);
  if (tokens < 0 || heads < 1 || d < 1) {
    throw std::invalid_argument(name + ": need tokens >= 0, heads >= 1, d >= 1; got " + std::to_string(tokens) +
                                ", " + std::to_string(heads) + ", " + std::to_string(d));
  }
  if (tokens > 0 && (rows == nullptr || out == nullptr)) throw std::invalid_argument(name + ": null rows or out");
  const std::size_t n = std::size_t(tokens) * heads * d;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(rows[i])) {
      throw std::invalid_argument(name + ": non-finite input at token " + std::to_string(i / (std::size_t(heads) * d)) +
                                  ", head " + std::to_string(i / d % heads) + ", element " + std::to_string(i % d));
    }
  }
}

float stored_float16(double value) { return float16_to_float(to_stored_float16(float(value))); }

int resolve_group(int group_size, int d, const char* method) {
  const int g = group_size == 0 ? d : group_size;
  if (g < 1 || d % g != 0) {
    throw std::invalid_argument(std::string(method) + ": group size " + std::to_string(g) + " must divide d = " +
                                std::to_string(d));
  }
  return g;
}

}  // namespace detail

namespace {

/// One naive-sym group of n elements.
void naive_symmetric_group(const float* x, int n, float* out) {
  double amax = 0.0;
  for (int i = 0; i < n; ++i) amax = std::max(amax, double(std::fabs(x[i])));
  const double s = detail::stored_float16(amax / 1.5);
  if (s == 0.0) {  // an all-zero group (or one below float16's range): the stored scale reads back 0
    std::fill(out, out + n, 0.0f);
    return;
  }
  for (int i = 0; i < n; ++i) {
    const double u = x[i] / s;
    const int q = int(u >= -1.0) + int(u >= 0.0) + int(u >= 1.0);  // nearest of −3/2, −1/2, 1/2, 3/2
    out[i] = float((q - 1.5) * s);
  }
}

}  // namespace

double NaiveSymmetricQuantizer::reconstruct(const float* rows, int tokens, int heads, int d, float* out) const {
  detail::check_rows(rows, tokens, heads, d, out, "naive-sym");
  const int g = detail::resolve_group(group_size_, d, "naive-sym");
  const std::size_t groups = std::size_t(tokens) * heads * (d / g);
  for (std::size_t i = 0; i < groups; ++i) naive_symmetric_group(rows + i * g, g, out + i * g);
  return double(groups) * (2.0 * g + 16.0);
}

bool is_power_of_two(int d) { return d > 0 && (d & (d - 1)) == 0; }

void walsh_hadamard(double* x, int d) {
  if (!is_power_of_two(d)) throw std::invalid_argument("Walsh-Hadamard needs d a power of two, got " + std::to_string(d));
  for (int half = 1; half < d; half *= 2) {
    for (int start = 0; start < d; start += 2 * half) {
      for (int i = start; i < start + half; ++i) {
        const double a = x[i], b = x[i + half];
        x[i] = a + b;
        x[i + half] = a - b;
      }
    }
  }
  const double norm = 1.0 / std::sqrt(double(d));
  for (int i = 0; i < d; ++i) x[i] *= norm;
}

namespace {

/// Rows ← rows·H (H symmetric, so this also undoes itself), through double.
void hadamard_rows(const float* in, std::size_t count, int d, float* out) {
  std::vector<double> row(d);
  for (std::size_t r = 0; r < count; ++r) {
    for (int i = 0; i < d; ++i) row[i] = in[r * d + i];
    walsh_hadamard(row.data(), d);
    for (int i = 0; i < d; ++i) out[r * d + i] = float(row[i]);
  }
}

}  // namespace

double Int2FormatQuantizer::reconstruct(const float* rows, int tokens, int heads, int d, float* out) const {
  const char* name = hadamard_ ? "quarot" : "naive-asym";
  detail::check_rows(rows, tokens, heads, d, out, name);
  Int2Config config = config_;
  config.head_dim = d;
  config.group_size = group_size_ == 0 ? d : group_size_;
  validate(config);
  if (hadamard_ && !is_power_of_two(d)) {
    throw std::invalid_argument(std::string(name) + ": d must be a power of two, got " + std::to_string(d));
  }
  const std::size_t count = std::size_t(tokens) * heads;
  std::vector<float> stored(count * d);
  if (hadamard_) hadamard_rows(rows, count, d, stored.data());
  else std::copy(rows, rows + count * d, stored.begin());
  std::vector<std::uint8_t> codes(count * config.packed_bytes());
  std::vector<std::uint8_t> scales(count * config.groups() * config.scale_bytes()), zeros(scales.size());
  quantize_rows(stored.data(), std::int64_t(count), config, {codes.data(), scales.data(), zeros.data()}, 1);
  dequantize_rows({codes.data(), scales.data(), zeros.data()}, std::int64_t(count), config, stored.data(), 1);
  if (hadamard_) hadamard_rows(stored.data(), count, d, out);
  else std::copy(stored.begin(), stored.end(), out);
  return double(count) * d * int2_bits_per_element(config);
}

}  // namespace oscar::runtime
