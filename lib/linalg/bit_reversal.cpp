#include "linalg/bit_reversal.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

namespace oscar::linalg {

unsigned bit_reverse(unsigned i, unsigned bits) {
  unsigned reversed = 0;
  for (unsigned b = 0; b < bits; ++b) reversed |= ((i >> b) & 1u) << (bits - 1 - b);
  return reversed;
}

std::vector<long> bit_reversal_permutation(const Vector& eigenvalues) {
  const long d = eigenvalues.size();
  if (!is_power_of_two(d)) {
    throw std::invalid_argument("bit-reversal size must be a power of two, got " + std::to_string(d));
  }
  unsigned bits = 0;
  while ((1L << bits) < d) ++bits;

  std::vector<long> descending(d);
  std::iota(descending.begin(), descending.end(), 0L);
  std::stable_sort(descending.begin(), descending.end(),
                   [&](long a, long b) { return eigenvalues[a] > eigenvalues[b]; });

  std::vector<long> perm(d);
  for (long i = 0; i < d; ++i) perm[bit_reverse(unsigned(i), bits)] = descending[i];
  return perm;
}

Matrix permutation_matrix(const std::vector<long>& perm) {
  const long d = long(perm.size());
  Matrix p = Matrix::Zero(d, d);
  for (long j = 0; j < d; ++j) p(perm[j], j) = 1.0;
  return p;
}

}  // namespace oscar::linalg
