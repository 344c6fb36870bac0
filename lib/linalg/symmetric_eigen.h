// Symmetric eigendecomposition in double, with a deterministic eigenvector sign rule.
//
// C = U · diag(λ) · Uᵀ, eigenvalues ascending (the order LAPACK's syevd and torch.linalg.eigh give),
// eigenvectors as the columns of U.
//
// Sign rule: each eigenvector is flipped so that its entry of largest magnitude is positive (the first such
// entry when several tie). Any solver agrees with this rule up to rounding, so two runs on the same matrix
// give the same U, and different tools can be compared column by column. Bases of repeated eigenvalues
// remain solver-defined: compare Uᵀ·C·U or R·Rᵀ, not U itself, when eigenvalues repeat.
#pragma once

#include "linalg/matrix.h"

namespace oscar::linalg {

struct SymmetricEigen {
  Vector eigenvalues;  ///< ascending
  Matrix eigenvectors; ///< column j belongs to eigenvalues[j]
};

/// The input is symmetrised ((C + Cᵀ)/2) first, as the reference does. Throws std::invalid_argument on a
/// non-square or non-finite matrix, std::runtime_error if the solver does not converge.
SymmetricEigen symmetric_eigen(const Matrix& covariance);

}  // namespace oscar::linalg
