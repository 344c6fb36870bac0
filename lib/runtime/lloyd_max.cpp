#include "runtime/lloyd_max.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>

namespace oscar::runtime {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kTolerance = 1e-12;  ///< on both Lloyd–Max conditions (the centroid residual)

double pdf(double x) { return std::isinf(x) ? 0.0 : std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI); }

/// P(a < Y < b) for Y ~ N(0, 1), as a difference of upper (or lower) tails when the cell lies in one tail,
/// so that tail cells keep their relative precision.
double probability(double a, double b) {
  if (a >= 0.0) return 0.5 * (std::erfc(a / M_SQRT2) - std::erfc(b / M_SQRT2));
  if (b <= 0.0) return 0.5 * (std::erfc(-b / M_SQRT2) - std::erfc(-a / M_SQRT2));
  return 0.5 * (std::erf(b / M_SQRT2) - std::erf(a / M_SQRT2));
}

/// Cell boundaries of levels c: −∞, the midpoints, +∞ (n + 1 values).
std::vector<double> boundaries(const std::vector<double>& c) {
  std::vector<double> t(c.size() + 1);
  t.front() = -kInf;
  t.back() = kInf;
  for (std::size_t i = 0; i + 1 < c.size(); ++i) t[i + 1] = 0.5 * (c[i] + c[i + 1]);
  return t;
}

double centroid(double a, double b) { return (pdf(a) - pdf(b)) / probability(a, b); }

/// One Lloyd step (levels ← centroids of the cells their midpoints define); returns max |change|.
double lloyd_step(std::vector<double>& c) {
  const std::vector<double> t = boundaries(c);
  double change = 0.0;
  for (std::size_t i = 0; i < c.size(); ++i) {
    const double next = centroid(t[i], t[i + 1]);
    change = std::max(change, std::fabs(next - c[i]));
    c[i] = next;
  }
  return change;
}

/// One Newton step on F(c) = c − centroid(cells(c)) = 0. F_i depends on c_{i−1}, c_i, c_{i+1} only, so the
/// Jacobian is tridiagonal: with m the centroid of (a, b) and P its probability,
///   ∂m/∂a = φ(a)(m − a)/P,  ∂m/∂b = φ(b)(b − m)/P,  and a, b move by half of each neighbouring level.
/// Lloyd's plain iteration converges linearly at a rate approaching 1 as the levels get dense (thousands of
/// steps at 8 bits); Newton converges quadratically once close, which Lloyd steps ensure first.
/// Returns max |F| before the step.
double newton_step(std::vector<double>& c) {
  const std::size_t n = c.size();
  const std::vector<double> t = boundaries(c);
  std::vector<double> lower(n, 0.0), diag(n, 1.0), upper(n, 0.0), rhs(n);
  double residual = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double a = t[i], b = t[i + 1], p = probability(a, b), m = (pdf(a) - pdf(b)) / p;
    rhs[i] = -(c[i] - m);
    residual = std::max(residual, std::fabs(rhs[i]));
    const double dm_da = std::isinf(a) ? 0.0 : pdf(a) * (m - a) / p;
    const double dm_db = std::isinf(b) ? 0.0 : pdf(b) * (b - m) / p;
    diag[i] -= 0.5 * (dm_da + dm_db);
    if (i > 0) lower[i] = -0.5 * dm_da;
    if (i + 1 < n) upper[i] = -0.5 * dm_db;
  }
  // Thomas algorithm (the matrix is diagonally dominant near the solution).
  for (std::size_t i = 1; i < n; ++i) {
    const double w = lower[i] / diag[i - 1];
    diag[i] -= w * upper[i - 1];
    rhs[i] -= w * rhs[i - 1];
  }
  rhs[n - 1] /= diag[n - 1];
  for (std::size_t i = n - 1; i-- > 0;) rhs[i] = (rhs[i] - upper[i] * rhs[i + 1]) / diag[i];
  for (std::size_t i = 0; i < n; ++i) c[i] += rhs[i];
  return residual;
}

/// Φ⁻¹(p) by bisection (only for the starting point).
double normal_quantile(double p) {
  double lo = -40.0, hi = 40.0;
  for (int it = 0; it < 200 && hi - lo > 1e-15; ++it) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(-mid / M_SQRT2) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

std::vector<double> solve_levels(int bits) {
  const int n = 1 << bits;
  // Start: the high-resolution optimum (level density ∝ φ^(1/3), i.e. quantiles of N(0, 3)).
  std::vector<double> c(n);
  for (int i = 0; i < n; ++i) c[i] = std::sqrt(3.0) * normal_quantile((i + 0.5) / n);
  for (int it = 0; it < 200; ++it) lloyd_step(c);
  for (int it = 0; it < 100; ++it) {
    const std::vector<double> before = c;
    if (newton_step(c) < 0.1 * kTolerance) {
      c = before;  // already converged: keep the levels whose residual was measured
      break;
    }
    if (!std::is_sorted(c.begin(), c.end())) {  // overshoot: back to the safe (slow) iteration
      c = before;
      lloyd_step(c);
    }
  }
  for (int i = 0; i < n / 2; ++i) {  // exact symmetry (the solution is symmetric; rounding is not)
    const double m = 0.5 * (c[n - 1 - i] - c[i]);
    c[i] = -m;
    c[n - 1 - i] = m;
  }
  std::vector<double> check = c;
  if (lloyd_step(check) > kTolerance) {
    throw std::logic_error("Gaussian Lloyd-Max levels did not converge for " + std::to_string(bits) + " bits");
  }
  return c;
}

}  // namespace

std::vector<double> gaussian_lloyd_max_levels(int bits) {
  if (bits < 1 || bits > kMaxLloydMaxBits) {
    throw std::invalid_argument("Lloyd-Max bits must be 1.." + std::to_string(kMaxLloydMaxBits) + ", got " +
                                std::to_string(bits));
  }
  static std::array<std::vector<double>, kMaxLloydMaxBits + 1> cache;
  static std::array<std::once_flag, kMaxLloydMaxBits + 1> once;
  std::call_once(once[bits], [bits] { cache[bits] = solve_levels(bits); });
  return cache[bits];
}

GaussianLloydMax::GaussianLloydMax(int bits) : bits_(bits), levels_(gaussian_lloyd_max_levels(bits)) {
  thresholds_.resize(levels_.size() - 1);
  for (std::size_t i = 0; i < thresholds_.size(); ++i) thresholds_[i] = 0.5 * (levels_[i] + levels_[i + 1]);
}

int GaussianLloydMax::encode(double y) const {
  if (std::isnan(y)) return 0;
  return int(std::upper_bound(thresholds_.begin(), thresholds_.end(), y) - thresholds_.begin());
}

double GaussianLloydMax::distortion() const {
  // Over a cell (a, b) with level c: ∫(y − c)²φ = [P + aφ(a) − bφ(b)] − 2c[φ(a) − φ(b)] + c²P.
  const std::vector<double> t = boundaries(levels_);
  double total = 0.0;
  for (std::size_t i = 0; i < levels_.size(); ++i) {
    const double a = t[i], b = t[i + 1], c = levels_[i], p = probability(a, b);
    const double a_pdf = std::isinf(a) ? 0.0 : a * pdf(a), b_pdf = std::isinf(b) ? 0.0 : b * pdf(b);
    total += (p + a_pdf - b_pdf) - 2.0 * c * (pdf(a) - pdf(b)) + c * c * p;
  }
  return total;
}

}  // namespace oscar::runtime
