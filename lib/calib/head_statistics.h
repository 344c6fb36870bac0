// Running sums of one KV head of one layer: everything the covariances need, in float64, with a size
// independent of the token count (a few d×d matrices).
//
// Sums hold the lower triangle only (the upper one stays zero); head_covariance() reads them through
// symmetric_from_lower(). Sums of disjoint token sets add exactly
// (up to float64 rounding), which is what merging shards relies on.
#pragma once

#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include "calib/method.h"
#include "linalg/matrix.h"

namespace oscar::calib {

using linalg::Matrix;

/// (chunk id, token index in chunk) of a token dropped from a head's statistics.
using TokenRef = std::pair<int, std::int64_t>;

struct HeadStatistics {
  // First pass.
  Matrix query_outer_sum;              ///< Σ over tokens and the g query heads of the group of q·qᵀ
  std::int64_t query_tokens = 0;       ///< tokens in query_outer_sum (each contributes g rows)
  Matrix key_outer_sum;                ///< Σ k·kᵀ
  Matrix value_outer_sum;              ///< Σ v·vᵀ
  std::int64_t key_value_tokens = 0;   ///< tokens in key_outer_sum and value_outer_sum
  std::set<int> first_pass_chunks;     ///< chunk ids already in the first-pass sums

  // Second pass (sst): u_t = kᵀ·C̄_Q·k with C̄_Q fixed before the pass starts.
  Matrix weighting_query_covariance;   ///< the C̄_Q the weights used (recorded so shards can be checked)
  Matrix weighted_value_outer_sum;     ///< Σ u_t·v·vᵀ
  double weight_sum = 0.0;             ///< Σ u_t
  std::int64_t weighted_tokens = 0;
  std::set<int> second_pass_chunks;

  /// Tokens whose queries were non-finite (with --skip-nonfinite): also left out of the second pass.
  std::set<TokenRef> skipped_query_tokens;
  std::int64_t skipped_tokens = 0;     ///< every (token, statistic) dropped for non-finite values

  /// Zero sums of the statistics in mask, sized d×d; others stay empty.
  static HeadStatistics zeros(const StatisticsMask& mask, int head_dim);
};

/// Full symmetric matrix from a sum that holds its lower triangle.
Matrix symmetric_from_lower(const Matrix& lower);

/// C̄_Q of the head: query_outer_sum / (query_tokens · group_size). Throws InputError when empty.
Matrix query_covariance(const HeadStatistics& head, int group_size);

/// The head's covariance for one target, symmetrised, as the reference defines it.
Matrix head_covariance(const HeadStatistics& head, Covariance covariance, int group_size);

/// Adds other's sums into into; the chunk sets of each pass must be disjoint. Throws InputError naming
/// `what` (e.g. "layer 3 kv head 1") on overlap or when the second passes used different C̄_Q.
void add_statistics(HeadStatistics& into, const HeadStatistics& other, const std::string& what);

}  // namespace oscar::calib
