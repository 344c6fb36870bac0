#include "model/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "core/error.h"

namespace oscar::model {

int argmax(const std::vector<float>& logits) {
  if (logits.empty()) throw std::invalid_argument("argmax: no logits");
  return static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

TokenSampler::TokenSampler(const SamplingOptions& options) : options_(options), generator_(options.seed) {
  if (!(options.temperature >= 0)) throw UsageError("--temperature must be >= 0");
  if (!(options.top_p > 0 && options.top_p <= 1)) throw UsageError("--top-p must be in (0, 1]");
}

int TokenSampler::next(const std::vector<float>& logits) {
  if (options_.temperature == 0) return argmax(logits);
  // Softmax in double over logits / temperature, shifted by the maximum for range.
  const double top = *std::max_element(logits.begin(), logits.end());
  std::vector<double> probs(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) probs[i] = std::exp((logits[i] - top) / options_.temperature);
  std::vector<int> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  // Stable: equal probabilities keep index order, so the nucleus is the same on every platform.
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return probs[size_t(a)] > probs[size_t(b)]; });
  const double total = std::accumulate(probs.begin(), probs.end(), 0.0);
  size_t kept = 0;
  double mass = 0;
  while (kept < order.size() && (kept == 0 || mass < options_.top_p * total)) mass += probs[size_t(order[kept++])];
  const double uniform = static_cast<double>(generator_() >> 11) * 0x1.0p-53;  // [0, 1), 53 random bits
  double threshold = uniform * mass;
  for (size_t i = 0; i < kept; ++i) {
    threshold -= probs[size_t(order[i])];
    if (threshold < 0) return order[i];
  }
  return order[kept - 1];  // rounding left a sliver: the last kept token
}

}  // namespace oscar::model
