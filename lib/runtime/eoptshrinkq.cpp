// eOptShrinkQ (baseline_quantizers.h): optimal-shrinkage low-rank part + TurboQuant-coded residual, per head.
#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/baseline_quantizers.h"
#include "runtime/low_rank.h"

namespace oscar::runtime {

double LowRankPart::bits() const {
  return rank == 0 ? 0.0 : 16.0 * rank * double(a[0].size() + b[0].size());
}

LowRankPart shrinkage_low_rank(const double* x, int tokens, int d, int max_rank) {
  LowRankPart part;
  part.product.assign(std::size_t(tokens) * d, 0.0);
  const ThinSvd svd = thin_svd(x, tokens, d);
  const Shrinkage shrinkage = optimal_shrinkage(svd.singular_values, tokens, d);
  part.sigma = shrinkage.sigma;
  part.rank = int(shrinkage.shrunk.size());
  if (max_rank > 0) part.rank = std::min(part.rank, max_rank);
  for (int i = 0; i < part.rank; ++i) {
    // Balanced factors: both carry √η, so neither strays far from float16's well-resolved range.
    const double f = std::sqrt(shrinkage.shrunk[i]);
    std::vector<float> a(tokens), b(d);
    for (int t = 0; t < tokens; ++t) a[t] = detail::stored_float16(f * svd.u[i][t]);
    for (int j = 0; j < d; ++j) b[j] = detail::stored_float16(f * svd.v[i][j]);
    for (int t = 0; t < tokens; ++t) {
      for (int j = 0; j < d; ++j) part.product[std::size_t(t) * d + j] += double(a[t]) * b[j];
    }
    part.a.push_back(std::move(a));
    part.b.push_back(std::move(b));
  }
  return part;
}

double EOptShrinkQuantizer::reconstruct(const float* rows, int tokens, int heads, int d, float* out) const {
  detail::check_rows(rows, tokens, heads, d, out, "eoptshrinkq");
  if (tokens == 0) return 0.0;
  double bits = 0.0;
  std::vector<double> x(std::size_t(tokens) * d), residual(d), coded(d);
  for (int h = 0; h < heads; ++h) {
    const RandomizedHadamard pi(d, head_seed(seed_, h));
    for (int t = 0; t < tokens; ++t) {
      for (int j = 0; j < d; ++j) x[std::size_t(t) * d + j] = rows[(std::size_t(t) * heads + h) * d + j];
    }
    const LowRankPart part = shrinkage_low_rank(x.data(), tokens, d, max_rank_);
    bits += part.bits();
    for (int t = 0; t < tokens; ++t) {
      const double* low_rank = part.product.data() + std::size_t(t) * d;
      for (int j = 0; j < d; ++j) residual[j] = x[std::size_t(t) * d + j] - low_rank[j];
      bits += turboquant_row(residual.data(), d, pi, codebook_, coded.data());
      for (int j = 0; j < d; ++j) out[(std::size_t(t) * heads + h) * d + j] = float(low_rank[j] + coded[j]);
    }
  }
  return bits;
}

}  // namespace oscar::runtime
