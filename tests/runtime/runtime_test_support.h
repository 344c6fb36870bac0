// Random inputs shared by the runtime tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace oscar::runtime::test {

inline std::vector<float> random_values(std::size_t n, std::uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = normal(rng);
  return v;
}

/// `heads` random orthogonal [d, d] matrices (Gram–Schmidt in double of Gaussian matrices).
inline std::vector<float> random_orthogonal(int heads, int d, std::uint32_t seed) {
  std::vector<float> out;
  for (int h = 0; h < heads; ++h) {
    const std::vector<float> g = random_values(std::size_t(d) * d, seed + 977u * h);
    std::vector<double> m(g.begin(), g.end());
    for (int i = 0; i < d; ++i) {
      double* row = m.data() + std::size_t(i) * d;
      for (int k = 0; k < i; ++k) {
        const double* prev = m.data() + std::size_t(k) * d;
        double dot = 0.0;
        for (int e = 0; e < d; ++e) dot += row[e] * prev[e];
        for (int e = 0; e < d; ++e) row[e] -= dot * prev[e];
      }
      double norm = 0.0;
      for (int e = 0; e < d; ++e) norm += row[e] * row[e];
      norm = std::sqrt(norm);
      for (int e = 0; e < d; ++e) row[e] /= norm;
    }
    out.insert(out.end(), m.begin(), m.end());
  }
  return out;
}

}  // namespace oscar::runtime::test
