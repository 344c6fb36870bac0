// Choosing the next token from logits: greedy, or temperature + top-p (nucleus) sampling from a seeded
// generator. Plain C++ and platform-independent: the same seed gives the same tokens on every machine
// (std::mt19937_64 is specified exactly; the uniform draw is built from its bits, not from
// std::uniform_real_distribution, whose algorithm is implementation-defined).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace oscar::model {

struct SamplingOptions {
  double temperature = 0.0;  ///< 0: greedy (argmax, first index on ties)
  double top_p = 1.0;        ///< keep the most likely tokens whose probabilities sum to at least top_p
  std::uint64_t seed = 0;
};

class TokenSampler {
 public:
  /// Throws oscar::UsageError for a negative temperature or top_p outside (0, 1].
  explicit TokenSampler(const SamplingOptions& options);
  int next(const std::vector<float>& logits);

 private:
  SamplingOptions options_;
  std::mt19937_64 generator_;
};

/// Index of the largest logit, the first on ties (as llama2.c's argmax).
int argmax(const std::vector<float>& logits);

}  // namespace oscar::model
