// The eigenvalue-ordered bit-reversal permutation P of the OSCAR reference.
//
//   sorted = argsort(eigenvalues, descending);  br[i] = i with its log2(d) bits reversed;
//   perm[br[i]] = sorted[i];  P = I[:, perm]   so that (X·P)[:, j] = X[:, perm[j]].
//
// It spreads the largest-variance directions as far apart as possible in the quartered INT2 packing, so
// no small quantisation group gets two of them. For ascending distinct eigenvalues perm[j] = d−1−br[j].
#pragma once

#include <vector>

#include "linalg/matrix.h"

namespace oscar::linalg {

/// i with its `bits` low bits reversed.
unsigned bit_reverse(unsigned i, unsigned bits);

/// perm as defined above. Ties in the eigenvalues keep index order (a stable sort), so the result is
/// deterministic. Throws std::invalid_argument unless the size is a power of two.
std::vector<long> bit_reversal_permutation(const Vector& eigenvalues);

/// P = I[:, perm].
Matrix permutation_matrix(const std::vector<long>& perm);

}  // namespace oscar::linalg
