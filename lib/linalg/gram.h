// Gram-matrix updates, the arithmetic of calibration, through OpenBLAS (dsyrk/dgemm run about twice as
// fast as Eigen's own kernels here: 38 vs 19 GFLOP/s for the 128×1024 updates calibration makes).
//
// Inputs are d×n column-major blocks, one vector per column. Sums hold their lower triangle only.
// OpenBLAS is pinned to one thread: callers parallelise over heads themselves, and a fixed thread count
// keeps the summation order, hence the bits, the same on every run. Eigen's kernels are the alternative for
// callers that must not touch OpenBLAS's process-wide settings (GramKernels).
#pragma once

#include "linalg/matrix.h"

namespace oscar::linalg {

/// Which kernels compute the updates. kOpenBlas (the default, twice as fast) pins OpenBLAS to one thread
/// process-wide, which suits callers that parallelise over heads themselves (the dump path). kEigen uses
/// Eigen's own single-threaded kernels and touches no process-wide state: for updates that run on a thread
/// beside other OpenBLAS users, such as the model capture worker next to LibTorch's multi-threaded matmuls.
/// Each kind is deterministic; the two round differently.
enum class GramKernels { kOpenBlas, kEigen };

/// Lower triangle of sum += X·Xᵀ, X = the first n columns of block.
void add_gram_lower(Matrix& sum, const Matrix& block, long n, GramKernels kernels = GramKernels::kOpenBlas);

/// Lower triangle of sum += X·diag(w)·Xᵀ, X = the first n columns of block, w of length ≥ n (entries may
/// be of either sign).
void add_weighted_gram_lower(Matrix& sum, const Matrix& block, long n, const Vector& weights,
                             GramKernels kernels = GramKernels::kOpenBlas);

/// out[j] = x_jᵀ·A·x_j for the first n columns of block (A symmetric, stored full); scratch is resized.
void quadratic_forms(const Matrix& a, const Matrix& block, long n, Vector& out, Matrix& scratch,
                     GramKernels kernels = GramKernels::kOpenBlas);

}  // namespace oscar::linalg
