// Normalised Sylvester Hadamard matrix and the fast Walsh–Hadamard transform.
//
// H[i][j] = (−1)^popcount(i & j) / √d. H is symmetric and orthonormal (H = Hᵀ = H⁻¹), so applying it twice
// is the identity. The reference builds the same matrix recursively: H_2n = [[H, H], [H, −H]] / √2.
#pragma once

#include "linalg/matrix.h"

namespace oscar::linalg {

/// Largest Hadamard size accepted (head dimensions are far below it).
inline constexpr long kMaxHadamardSize = 4096;

/// d×d normalised Hadamard matrix. Throws std::invalid_argument unless d is a power of two ≤ 4096.
Matrix hadamard(long d);

/// In-place x ← H·x for one vector of length n (a power of two): O(n log n), same result as hadamard(n)·x
/// up to rounding. Row vectors give the same result since H is symmetric.
void fast_walsh_hadamard(double* x, long n);

}  // namespace oscar::linalg
