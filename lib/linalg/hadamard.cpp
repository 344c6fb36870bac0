#include "linalg/hadamard.h"

#include <bitset>
#include <cmath>
#include <stdexcept>
#include <string>

namespace oscar::linalg {

namespace {

void check_hadamard_size(long d) {
  if (!is_power_of_two(d) || d > kMaxHadamardSize) {
    throw std::invalid_argument("Hadamard size must be a power of two up to 4096, got " + std::to_string(d));
  }
}

}  // namespace

Matrix hadamard(long d) {
  check_hadamard_size(d);
  const double entry = 1.0 / std::sqrt(double(d));
  Matrix h(d, d);
  for (long i = 0; i < d; ++i) {
    for (long j = 0; j < d; ++j) {
      const bool odd = std::bitset<32>(static_cast<unsigned long>(i & j)).count() & 1u;
      h(i, j) = odd ? -entry : entry;
    }
  }
  return h;
}

void fast_walsh_hadamard(double* x, long n) {
  check_hadamard_size(n);
  for (long half = 1; half < n; half *= 2) {
    for (long block = 0; block < n; block += 2 * half) {
      for (long i = block; i < block + half; ++i) {
        const double a = x[i];
        const double b = x[i + half];
        x[i] = a + b;
        x[i + half] = a - b;
      }
    }
  }
  const double scale = 1.0 / std::sqrt(double(n));
  for (long i = 0; i < n; ++i) x[i] *= scale;
}

}  // namespace oscar::linalg
