#include "runtime/low_rank.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>

namespace oscar::runtime {
namespace {

using Columns = std::vector<std::vector<double>>;

double dot(const std::vector<double>& x, const std::vector<double>& y) {
  double s = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) s += x[i] * y[i];
  return s;
}

/// R (n × n, as columns) of a Householder QR of the m × n matrix given as columns (m ≥ n). Q is not needed:
/// R has A's singular values and right singular vectors, and Jacobi on n × n is cheaper than on m × n.
Columns householder_r(Columns a) {
  const int n = int(a.size()), m = int(a[0].size());
  for (int k = 0; k < n; ++k) {
    std::vector<double> v(a[k].begin() + k, a[k].end());
    const double norm = std::sqrt(std::inner_product(v.begin(), v.end(), v.begin(), 0.0));
    if (norm == 0.0) continue;
    const double alpha = v[0] > 0.0 ? -norm : norm;  // the sign that avoids cancellation in v[0] − alpha
    v[0] -= alpha;
    const double vv = std::inner_product(v.begin(), v.end(), v.begin(), 0.0);
    for (int j = k; j < n; ++j) {
      double proj = 0.0;
      for (int i = k; i < m; ++i) proj += v[i - k] * a[j][i];
      const double f = 2.0 * proj / vv;
      for (int i = k; i < m; ++i) a[j][i] -= f * v[i - k];
    }
  }
  Columns r(n, std::vector<double>(n, 0.0));
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i <= j; ++i) r[j][i] = a[j][i];
  }
  return r;
}

/// One-sided Jacobi (Hestenes): rotates column pairs of w until all are orthogonal, accumulating the
/// rotations in v (w_final = w_initial · v). Column norms of w are then the singular values.
void one_sided_jacobi(Columns& w, Columns& v) {
  const int n = int(w.size());
  constexpr double kOrthogonal = 1e-15;
  std::vector<double> norm2(n);  // squared column norms, refreshed every sweep and updated by each rotation
  for (int sweep = 0; sweep < 80; ++sweep) {
    bool rotated = false;
    for (int j = 0; j < n; ++j) norm2[j] = dot(w[j], w[j]);
    for (int p = 0; p < n; ++p) {
      for (int q = p + 1; q < n; ++q) {
        const double alpha = norm2[p], beta = norm2[q], gamma = dot(w[p], w[q]);
        if (gamma == 0.0 || std::fabs(gamma) <= kOrthogonal * std::sqrt(alpha * beta)) continue;
        rotated = true;
        // t = tan of the angle that zeroes the pair's inner product (the smaller root of t² + 2ζt − 1 = 0);
        // then ‖w_p‖² drops by tγ and ‖w_q‖² grows by tγ.
        const double zeta = (beta - alpha) / (2.0 * gamma);
        const double t = (zeta >= 0.0 ? 1.0 : -1.0) / (std::fabs(zeta) + std::hypot(1.0, zeta));
        const double c = 1.0 / std::sqrt(1.0 + t * t), s = c * t;
        norm2[p] = alpha - t * gamma;
        norm2[q] = beta + t * gamma;
        for (Columns* x : {&w, &v}) {
          std::vector<double>& xp = (*x)[p];
          std::vector<double>& xq = (*x)[q];
          for (std::size_t i = 0; i < xp.size(); ++i) {
            const double a = xp[i], b = xq[i];
            xp[i] = c * a - s * b;
            xq[i] = s * a + c * b;
          }
        }
      }
    }
    if (!rotated) return;
  }
}

ThinSvd svd_tall(const double* a, int m, int n) {  // m ≥ n
  Columns cols(n, std::vector<double>(m));
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) cols[j][i] = a[std::size_t(i) * n + j];
  }
  Columns w = householder_r(cols);
  Columns v(n, std::vector<double>(n, 0.0));
  for (int j = 0; j < n; ++j) v[j][j] = 1.0;
  one_sided_jacobi(w, v);
  std::vector<double> s(n);
  for (int j = 0; j < n; ++j) s[j] = std::sqrt(dot(w[j], w[j]));
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return s[x] > s[y]; });
  ThinSvd out;
  for (int j : order) {
    out.singular_values.push_back(s[j]);
    out.v.push_back(v[j]);
    std::vector<double> u(m, 0.0);  // u = A v / s, from A itself
    if (s[j] > 0.0) {
      for (int k = 0; k < n; ++k) {
        for (int i = 0; i < m; ++i) u[i] += v[j][k] * cols[k][i];
      }
      for (double& x : u) x /= s[j];
    }
    out.u.push_back(std::move(u));
  }
  return out;
}

}  // namespace

ThinSvd thin_svd(const double* a, int m, int n) {
  if (m < 1 || n < 1) throw std::invalid_argument("thin_svd needs a nonempty matrix");
  if (m >= n) return svd_tall(a, m, n);
  std::vector<double> t(std::size_t(m) * n);
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) t[std::size_t(j) * m + i] = a[std::size_t(i) * n + j];
  }
  ThinSvd out = svd_tall(t.data(), n, m);
  std::swap(out.u, out.v);
  return out;
}

double marchenko_pastur_median(double beta) {
  if (!(beta > 0.0 && beta <= 1.0)) {
    throw std::invalid_argument("Marchenko-Pastur ratio must be in (0, 1], got " + std::to_string(beta));
  }
  const double lo = (1.0 - std::sqrt(beta)) * (1.0 - std::sqrt(beta)), hi = (1.0 + std::sqrt(beta)) * (1.0 + std::sqrt(beta));
  const double half_width = 0.5 * (hi - lo);
  // x = lo + half_width·(1 − cos θ), θ ∈ [0, π], removes the square-root endpoints: √((hi − x)(x − lo)) =
  // half_width·sin θ, so the integrand half_width² sin²θ / (2πβx) is smooth (at β = 1 and θ = 0 its limit
  // is hi/(2πβ), since sin²θ/(1 − cos θ) → 2).
  const auto integrand = [&](double theta) {
    const double x = lo + half_width * (1.0 - std::cos(theta));
    if (x == 0.0) return hi / (2.0 * M_PI * beta);
    const double s = std::sin(theta);
    return half_width * half_width * s * s / (2.0 * M_PI * beta * x);
  };
  const auto mass_up_to = [&](double theta) {  // composite Simpson on [0, θ]
    constexpr int kIntervals = 4096;
    const double h = theta / kIntervals;
    double sum = integrand(0.0) + integrand(theta);
    for (int i = 1; i < kIntervals; ++i) sum += (i % 2 ? 4.0 : 2.0) * integrand(i * h);
    return sum * h / 3.0;
  };
  double a = 0.0, b = M_PI;
  for (int it = 0; it < 60; ++it) {
    const double mid = 0.5 * (a + b);
    (mass_up_to(mid) < 0.5 ? a : b) = mid;
  }
  return lo + half_width * (1.0 - std::cos(0.5 * (a + b)));
}

Shrinkage optimal_shrinkage(const std::vector<double>& singular_values, int m, int n) {
  const int k = int(singular_values.size());
  if (k != std::min(m, n) || k < 1) throw std::invalid_argument("optimal_shrinkage: need min(m, n) singular values");
  const double n_max = std::max(m, n), beta = double(std::min(m, n)) / n_max;
  std::vector<double> sorted = singular_values;
  std::sort(sorted.begin(), sorted.end());
  const double median = k % 2 ? sorted[k / 2] : 0.5 * (sorted[k / 2 - 1] + sorted[k / 2]);
  Shrinkage out;
  out.sigma = median / std::sqrt(n_max * marchenko_pastur_median(beta));
  if (out.sigma == 0.0) {
    for (double s : singular_values) {
      if (s > 0.0) out.shrunk.push_back(s);
    }
    return out;
  }
  const double unit = out.sigma * std::sqrt(n_max), edge = 1.0 + std::sqrt(beta);
  for (double s : singular_values) {  // descending: stop at the first one inside the bulk
    const double y = s / unit;
    if (!(y > edge)) break;
    const double q = y * y - beta - 1.0;
    out.shrunk.push_back(std::sqrt(q * q - 4.0 * beta) / y * unit);
  }
  return out;
}

}  // namespace oscar::runtime
