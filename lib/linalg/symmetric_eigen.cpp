#include "linalg/symmetric_eigen.h"

#include <stdexcept>

namespace oscar::linalg {

namespace {

void apply_sign_rule(Matrix& eigenvectors) {
  for (long j = 0; j < eigenvectors.cols(); ++j) {
    long largest = 0;
    for (long i = 1; i < eigenvectors.rows(); ++i) {
      if (std::abs(eigenvectors(i, j)) > std::abs(eigenvectors(largest, j))) largest = i;
    }
    if (eigenvectors(largest, j) < 0) eigenvectors.col(j) *= -1.0;
  }
}

}  // namespace

SymmetricEigen symmetric_eigen(const Matrix& covariance) {
  if (covariance.rows() != covariance.cols()) throw std::invalid_argument("eigendecomposition needs a square matrix");
  if (!covariance.allFinite()) throw std::invalid_argument("covariance has non-finite entries");
  const Matrix symmetric = (covariance + covariance.transpose()) / 2.0;
  Eigen::SelfAdjointEigenSolver<Matrix> solver(symmetric, Eigen::ComputeEigenvectors);
  if (solver.info() != Eigen::Success) throw std::runtime_error("symmetric eigendecomposition did not converge");
  SymmetricEigen result{solver.eigenvalues(), solver.eigenvectors()};
  apply_sign_rule(result.eigenvectors);
  return result;
}

}  // namespace oscar::linalg
