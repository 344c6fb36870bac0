// Gram-matrix updates, the arithmetic of calibration, through OpenBLAS (dsyrk/dgemm run about twice as
// fast as Eigen's own kernels here: 38 vs 19 GFLOP/s for the 128×1024 updates calibration makes).
//
// Inputs are d×n column-major blocks, one vector per column. Sums hold their lower triangle only.
// OpenBLAS is pinned to one thread: callers parallelise over heads themselves, and a fixed thread count
// keeps the summation order, hence the bits, the same on every run.
#pragma once

#include "linalg/matrix.h"

namespace oscar::linalg {

/// The Gram updates switch OpenBLAS to one thread (they run from parallel_for workers). OpenBLAS's thread
/// count is process-wide, so code that calls them serially between large multi-threaded products (the model
/// capture sink, between LibTorch matmuls that use the same OpenBLAS) holds this guard around the calls: it
/// restores the previous count on destruction. Not for use from several threads at once.
class BlasThreadsGuard {
 public:
  BlasThreadsGuard();
  ~BlasThreadsGuard();
  BlasThreadsGuard(const BlasThreadsGuard&) = delete;
  BlasThreadsGuard& operator=(const BlasThreadsGuard&) = delete;

 private:
  int saved_threads_;
};

/// Lower triangle of sum += X·Xᵀ, X = the first n columns of block.
void add_gram_lower(Matrix& sum, const Matrix& block, long n);

/// Lower triangle of sum += X·diag(w)·Xᵀ, X = the first n columns of block, w of length ≥ n (entries may
/// be of either sign).
void add_weighted_gram_lower(Matrix& sum, const Matrix& block, long n, const Vector& weights);

/// out[j] = x_jᵀ·A·x_j for the first n columns of block (A symmetric, stored full); scratch is resized.
void quadratic_forms(const Matrix& a, const Matrix& block, long n, Vector& out, Matrix& scratch);

}  // namespace oscar::linalg
