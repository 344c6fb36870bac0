// Symmetric eigendecomposition in double, with a deterministic eigenvector sign rule.
//
// C = U · diag(λ) · Uᵀ, eigenvalues ascending (the order LAPACK's syevd and torch.linalg.eigh give),
// eigenvectors as the columns of U.
//
// Sign rule: each eigenvector is flipped so that its entry of largest magnitude is positive (the first such
// entry when several tie exactly). The same input therefore always gives the same U, and another tool that
// applies the rule agrees column by column unless two entries of a column are equal in magnitude up to
// rounding. Bases of repeated eigenvalues remain solver-defined: compare Uᵀ·C·U, not U, when they repeat.
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
