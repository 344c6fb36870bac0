// Low-rank estimation for eOptShrinkQ (baseline_quantizers.h): a thin SVD and the optimal singular-value
// shrinker of Gavish & Donoho ("Optimal Shrinkage of Singular Values", IEEE Trans. Inf. Theory 2017) for
// Frobenius loss with unknown noise level.
//
// Model: X = L + σZ, X is m × n, Z has iid N(0, 1) entries. With n_max = max(m, n), β = min(m, n)/n_max and
// y_i = s_i / (σ√n_max) the normalised singular values, noise alone fills the Marchenko–Pastur bulk up to
// 1 + √β (the BBP edge); a singular value above it carries signal, and the Frobenius-optimal estimate of
// the signal's singular value is
//   η(y) = √((y² − β − 1)² − 4β) / y   for y > 1 + √β,  0 otherwise   (times σ√n_max).
// σ is estimated from the median singular value: σ = s_med / √(n_max · μ_β), μ_β the median of the
// Marchenko–Pastur law with ratio β.
//
// The SVD is written here (one-sided Jacobi after a Householder QR, in double) rather than taken from Eigen:
// lib/runtime builds without Eigen (OSCAR_RUNTIME_ONLY).
#pragma once

#include <vector>

namespace oscar::runtime {

/// A = Σ_i s_i u_i v_iᵀ with k = min(m, n) terms, s descending. u[i] has m entries, v[i] n; for s_i = 0, u[i] is 0.
struct ThinSvd {
  std::vector<double> singular_values;
  std::vector<std::vector<double>> u;
  std::vector<std::vector<double>> v;
};

/// SVD of the row-major m × n matrix a (m, n ≥ 1). Singular values to a few ulps of s_max (Jacobi sweeps run
/// until every column pair is orthogonal to 1e-15 relative).
ThinSvd thin_svd(const double* a, int m, int n);

/// Median μ_β of the Marchenko–Pastur law with ratio 0 < β ≤ 1 and unit variance (density
/// √((b − x)(x − a)) / (2πβx) on [a, b] = [(1 − √β)², (1 + √β)²]); numerical integration and bisection.
/// μ_1 ≈ 0.6528 (Gavish–Donoho's ω(1) = λ*(1)/√μ_1 = 2.858).
double marchenko_pastur_median(double beta);

/// What optimal shrinkage keeps of the singular values s (descending) of an m × n matrix.
struct Shrinkage {
  double sigma = 0.0;          ///< estimated noise level per entry
  std::vector<double> shrunk;  ///< η_i·σ√n_max for the kept i (all y_i > 1 + √β): the rank is shrunk.size()
};

/// Gavish–Donoho shrinkage with σ from the median singular value. If that median is 0 (a matrix of rank below
/// half its smaller dimension, no noise) σ = 0 and every nonzero singular value is kept unshrunk.
Shrinkage optimal_shrinkage(const std::vector<double>& singular_values, int m, int n);

}  // namespace oscar::runtime
