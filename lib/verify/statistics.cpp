#include "verify/statistics.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

namespace oscar::verify {

double kl_divergence(const float* reference_log_probs, const float* log_probs, int size) {
  double sum = 0;
  for (int i = 0; i < size; ++i) {
    const double log_p = reference_log_probs[i];
    const double p = std::exp(log_p);
    if (p > 0) sum += p * (log_p - static_cast<double>(log_probs[i]));
  }
  return std::max(sum, 0.0);  // exact KL is ≥ 0; float32 log-probs can leave −1e-9
}

int argmax(const float* values, int size) {
  int best = 0;
  for (int i = 1; i < size; ++i) {
    if (values[i] > values[best]) best = i;
  }
  return best;
}

namespace {

double percentile(std::vector<double> sorted_values, double fraction) {
  // Linear interpolation between closest ranks (numpy's default).
  const double position = fraction * static_cast<double>(sorted_values.size() - 1);
  const auto below = static_cast<size_t>(std::floor(position));
  const size_t above = std::min(below + 1, sorted_values.size() - 1);
  const double weight = position - static_cast<double>(below);
  return sorted_values[below] * (1 - weight) + sorted_values[above] * weight;
}

}  // namespace

DropInterval paired_bootstrap_drop(const std::vector<int>& reference_correct, const std::vector<int>& other_correct,
                                   int resamples, std::uint64_t seed) {
  if (reference_correct.size() != other_correct.size()) throw std::invalid_argument("paired_bootstrap_drop: unpaired inputs");
  DropInterval result;
  const size_t n = reference_correct.size();
  if (n == 0) return result;
  std::vector<int> difference(n);
  long total = 0;
  for (size_t i = 0; i < n; ++i) {
    difference[i] = reference_correct[i] - other_correct[i];
    total += difference[i];
  }
  result.drop = 100.0 * static_cast<double>(total) / static_cast<double>(n);
  if (resamples <= 0) {
    result.low = result.high = result.drop;
    return result;
  }
  std::mt19937_64 generator(seed);
  std::vector<double> drops(static_cast<size_t>(resamples));
  for (double& drop : drops) {
    long sum = 0;
    for (size_t i = 0; i < n; ++i) sum += difference[static_cast<size_t>(generator() % n)];
    drop = 100.0 * static_cast<double>(sum) / static_cast<double>(n);
  }
  std::sort(drops.begin(), drops.end());
  result.low = percentile(drops, 0.025);
  result.high = percentile(drops, 0.975);
  return result;
}

}  // namespace oscar::verify
