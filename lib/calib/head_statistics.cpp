#include "calib/head_statistics.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace oscar::calib {

namespace {

void add_matrix(Matrix& into, const Matrix& other) {
  if (other.size() == 0) return;
  if (into.size() == 0) {
    into = other;
  } else {
    into += other;
  }
}

template <typename T>
void add_disjoint(std::set<T>& into, const std::set<T>& other, const std::string& what, const char* pass) {
  for (const auto& item : other) {
    if (!into.insert(item).second) {
      throw InputError(what + ": chunk " + std::to_string(item) + " appears in two shards (" + pass + ")");
    }
  }
}

}  // namespace

HeadStatistics HeadStatistics::zeros(const StatisticsMask& mask, int head_dim) {
  HeadStatistics head;
  if (mask.query) head.query_outer_sum = Matrix::Zero(head_dim, head_dim);
  if (mask.key_value) {
    head.key_outer_sum = Matrix::Zero(head_dim, head_dim);
    head.value_outer_sum = Matrix::Zero(head_dim, head_dim);
  }
  if (mask.weighted_value) head.weighted_value_outer_sum = Matrix::Zero(head_dim, head_dim);
  return head;
}

Matrix symmetric_from_lower(const Matrix& lower) {
  Matrix full = lower.triangularView<Eigen::Lower>();
  full.triangularView<Eigen::StrictlyUpper>() = lower.transpose().triangularView<Eigen::StrictlyUpper>();
  return full;
}

Matrix query_covariance(const HeadStatistics& head, int group_size) {
  if (head.query_tokens == 0) throw InputError("no query tokens were accumulated");
  return symmetric_from_lower(head.query_outer_sum) / (double(head.query_tokens) * group_size);
}

Matrix head_covariance(const HeadStatistics& head, Covariance covariance, int group_size) {
  switch (covariance) {
    case Covariance::kQqt: return query_covariance(head, group_size);
    case Covariance::kKtk:
    case Covariance::kVtv: {
      if (head.key_value_tokens == 0) throw InputError("no key/value tokens were accumulated");
      const Matrix& sum = covariance == Covariance::kKtk ? head.key_outer_sum : head.value_outer_sum;
      return symmetric_from_lower(sum) / double(head.key_value_tokens);
    }
    case Covariance::kSst:
      if (head.weighted_tokens == 0) throw InputError("the second (sst) pass has no tokens");
      // The reference normalises the weights to mean 1 (w = u / max(Σu, 1e-12) · T) and divides by T:
      // T cancels, leaving Σ u·v·vᵀ / max(Σu, 1e-12).
      return symmetric_from_lower(head.weighted_value_outer_sum) / std::max(head.weight_sum, 1e-12);
  }
  throw std::logic_error("unhandled covariance");
}

void add_statistics(HeadStatistics& into, const HeadStatistics& other, const std::string& what) {
  add_disjoint(into.first_pass_chunks, other.first_pass_chunks, what, "first pass");
  add_disjoint(into.second_pass_chunks, other.second_pass_chunks, what, "second pass");
  if (other.weighted_tokens > 0) {
    if (into.weighted_tokens > 0 && into.weighting_query_covariance != other.weighting_query_covariance) {
      throw InputError(what + ": second-pass shards used different query covariances; run token shards with "
                              "--pass 1, merge them with --state-out, then run --pass 2 --query-state on that");
    }
    into.weighting_query_covariance = other.weighting_query_covariance;
  }
  add_matrix(into.query_outer_sum, other.query_outer_sum);
  add_matrix(into.key_outer_sum, other.key_outer_sum);
  add_matrix(into.value_outer_sum, other.value_outer_sum);
  add_matrix(into.weighted_value_outer_sum, other.weighted_value_outer_sum);
  into.query_tokens += other.query_tokens;
  into.key_value_tokens += other.key_value_tokens;
  into.weighted_tokens += other.weighted_tokens;
  into.weight_sum += other.weight_sum;
  into.skipped_query_tokens.insert(other.skipped_query_tokens.begin(), other.skipped_query_tokens.end());
  into.skipped_tokens += other.skipped_tokens;
}

}  // namespace oscar::calib
