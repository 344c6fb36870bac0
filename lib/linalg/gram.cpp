#include "linalg/gram.h"

#include <cblas.h>

#include <cmath>

namespace oscar::linalg {

namespace {

/// Many small syrk calls run from parallel_for workers; OpenBLAS's own threads would oversubscribe the cores.
/// Checked on every call (cheap) rather than once: other code in the process may have changed the count.
void use_single_threaded_blas() {
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

void syrk_lower(Matrix& sum, const double* columns, long d, long n, double alpha, GramKernels kernels) {
  if (kernels == GramKernels::kEigen) {
    sum.selfadjointView<Eigen::Lower>().rankUpdate(Eigen::Map<const Matrix>(columns, d, n), alpha);
    return;
  }
  use_single_threaded_blas();
  cblas_dsyrk(CblasColMajor, CblasLower, CblasNoTrans, int(d), int(n), alpha, columns, int(d), 1.0, sum.data(),
              int(sum.rows()));
}

}  // namespace

void add_gram_lower(Matrix& sum, const Matrix& block, long n, GramKernels kernels) {
  if (n <= 0) return;
  syrk_lower(sum, block.data(), block.rows(), n, 1.0, kernels);
}

void add_weighted_gram_lower(Matrix& sum, const Matrix& block, long n, const Vector& weights, GramKernels kernels) {
  if (n <= 0) return;
  // X·diag(w)·Xᵀ = Σ w_j x_j x_jᵀ: scale columns by √|w_j| and add the positive and negative parts with
  // syrk (half the work of a general product). Negative weights only come from rounding (w = kᵀ·C·k with C
  // positive semi-definite), but they are kept so the sum follows the formula (up to the rounding of √|w|²).
  const long d = block.rows();
  Matrix positive(d, n), negative(d, n);
  long positives = 0, negatives = 0;
  for (long j = 0; j < n; ++j) {
    const double w = weights[j];
    if (w >= 0) {
      positive.col(positives++) = block.col(j) * std::sqrt(w);
    } else {
      negative.col(negatives++) = block.col(j) * std::sqrt(-w);
    }
  }
  if (positives) syrk_lower(sum, positive.data(), d, positives, 1.0, kernels);
  if (negatives) syrk_lower(sum, negative.data(), d, negatives, -1.0, kernels);
}

void quadratic_forms(const Matrix& a, const Matrix& block, long n, Vector& out, Matrix& scratch, GramKernels kernels) {
  out.resize(n);
  if (n <= 0) return;
  const long d = block.rows();
  scratch.resize(d, n);
  if (kernels == GramKernels::kEigen) {
    scratch.noalias() = a * block.leftCols(n);
  } else {
    use_single_threaded_blas();
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, int(d), int(n), int(d), 1.0, a.data(), int(d), block.data(),
                int(d), 0.0, scratch.data(), int(d));
  }
  out = block.leftCols(n).cwiseProduct(scratch).colwise().sum().transpose();
}

}  // namespace oscar::linalg
