// The statistics oscar-verify reports: per-token divergence between two next-token distributions, and the
// paired bootstrap interval of an accuracy drop. Plain C++, double accumulation, deterministic.
#pragma once

#include <cstdint>
#include <vector>

namespace oscar::verify {

/// KL(p ‖ q) = Σ p_i (log p_i − log q_i) in nats, from natural-log distributions of `size` entries (terms
/// with p_i = 0 contribute 0), accumulated in double.
double kl_divergence(const float* reference_log_probs, const float* log_probs, int size);

/// Index of the largest entry, the first on ties.
int argmax(const float* values, int size);

struct DropInterval {
  double drop = 0;         ///< mean(reference) − mean(other), in accuracy points (percent)
  double low = 0, high = 0;///< the 2.5% and 97.5% percentiles of the resampled drops
};

/// Paired bootstrap over questions: `resamples` draws of n indices with replacement (std::mt19937_64 seeded
/// with `seed`, index = draw mod n, the same on every platform), the drop recomputed on each draw.
/// correct_* are 0/1 per question, the same questions in the same order. Empty input gives all zeros.
DropInterval paired_bootstrap_drop(const std::vector<int>& reference_correct, const std::vector<int>& other_correct,
                                   int resamples, std::uint64_t seed);

}  // namespace oscar::verify
