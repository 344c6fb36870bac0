// TurboQuant, MSE variant (baseline_quantizers.h).
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/baseline_quantizers.h"

namespace oscar::runtime {

std::uint64_t head_seed(std::uint64_t seed, int head) {
  // splitmix64: neighbouring heads get unrelated streams.
  std::uint64_t z = seed + std::uint64_t(head) * 0x9E3779B97F4A7C15ull + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

RandomizedHadamard::RandomizedHadamard(int d, std::uint64_t seed) : signs_(d) {
  if (!is_power_of_two(d)) {
    throw std::invalid_argument("randomized Hadamard needs d a power of two, got " + std::to_string(d));
  }
  std::mt19937_64 rng(seed);
  std::uint64_t word = 0;
  for (int i = 0; i < d; ++i) {
    if (i % 64 == 0) word = rng();
    signs_[i] = (word >> (i % 64)) & 1u ? -1.0 : 1.0;
  }
}

void RandomizedHadamard::forward(double* x) const {
  const int d = int(signs_.size());
  for (int i = 0; i < d; ++i) x[i] *= signs_[i];
  walsh_hadamard(x, d);
}

void RandomizedHadamard::inverse(double* y) const {
  const int d = int(signs_.size());
  walsh_hadamard(y, d);  // Hᵀ = H
  for (int i = 0; i < d; ++i) y[i] *= signs_[i];
}

double turboquant_row(const double* x, int d, const RandomizedHadamard& pi, const GaussianLloydMax& codebook,
                      double* out) {
  double sum_squares = 0.0;
  for (int i = 0; i < d; ++i) sum_squares += x[i] * x[i];
  const double norm = std::sqrt(sum_squares), stored_norm = detail::stored_float16(norm);
  const double root_d = std::sqrt(double(d));
  if (norm == 0.0) {
    for (int i = 0; i < d; ++i) out[i] = 0.0;
  } else {
    for (int i = 0; i < d; ++i) out[i] = x[i] / norm * root_d;
    pi.forward(out);
    for (int i = 0; i < d; ++i) out[i] = codebook.decode(codebook.encode(out[i]));
    pi.inverse(out);
    for (int i = 0; i < d; ++i) out[i] *= stored_norm / root_d;
  }
  return double(codebook.bits()) * d + 16.0;
}

double TurboQuantizer::reconstruct(const float* rows, int tokens, int heads, int d, float* out) const {
  detail::check_rows(rows, tokens, heads, d, out, "turboquant");
  std::vector<RandomizedHadamard> pis;
  for (int h = 0; h < heads; ++h) pis.emplace_back(d, head_seed(seed_, h));
  std::vector<double> x(d), y(d);
  double bits = 0.0;
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      const std::size_t at = (std::size_t(t) * heads + h) * d;
      for (int i = 0; i < d; ++i) x[i] = rows[at + i];
      bits += turboquant_row(x.data(), d, pis[h], codebook_, y.data());
      for (int i = 0; i < d; ++i) out[at + i] = float(y[i]);
    }
  }
  return bits;
}

}  // namespace oscar::runtime
