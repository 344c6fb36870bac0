// lib/linalg against independent facts: closed-form Hadamard entries, the bit-reversal sequence that
// the reference documents for d = 128, eigen identities, and orthogonality of every composition.
#include <gtest/gtest.h>

#include <bitset>
#include <cmath>
#include <random>

#include "linalg/bit_reversal.h"
#include "linalg/composition.h"
#include "linalg/hadamard.h"
#include "linalg/symmetric_eigen.h"

using namespace oscar::linalg;

namespace {

Matrix random_covariance(long d, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Matrix x(4 * d, d);
  for (long i = 0; i < x.rows(); ++i)
    for (long j = 0; j < d; ++j) x(i, j) = normal(rng) * (1.0 + j);  // anisotropic: distinct eigenvalues
  return x.transpose() * x / double(x.rows());
}

}  // namespace

TEST(Hadamard, EntriesMatchPopcountFormula) {
  for (long d : {1L, 2L, 8L, 128L, 4096L}) {
    const Matrix h = hadamard(d);
    const long step = d > 256 ? 37 : 1;
    for (long i = 0; i < d; i += step)
      for (long j = 0; j < d; j += step) {
        const int sign = (std::bitset<32>(unsigned(i & j)).count() % 2) ? -1 : 1;
        ASSERT_DOUBLE_EQ(h(i, j), sign / std::sqrt(double(d))) << d << " " << i << " " << j;
      }
  }
}

TEST(Hadamard, IsSymmetricOrthonormal) {
  const Matrix h = hadamard(256);
  EXPECT_EQ((h - h.transpose()).cwiseAbs().maxCoeff(), 0.0);
  EXPECT_LT(orthogonality_error(h), 1e-13);
}

TEST(Hadamard, RejectsNonPowersOfTwoAndTooLarge) {
  EXPECT_THROW(hadamard(0), std::invalid_argument);
  EXPECT_THROW(hadamard(96), std::invalid_argument);
  EXPECT_THROW(hadamard(8192), std::invalid_argument);
}

TEST(Hadamard, FastTransformEqualsMatrixProduct) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  for (long d : {1L, 2L, 64L, 128L, 1024L}) {
    Vector x(d);
    for (long i = 0; i < d; ++i) x[i] = normal(rng);
    const Vector expected = hadamard(d) * x;
    Vector actual = x;
    fast_walsh_hadamard(actual.data(), d);
    EXPECT_LT((expected - actual).cwiseAbs().maxCoeff(), 1e-12) << d;
    fast_walsh_hadamard(actual.data(), d);  // H is an involution
    EXPECT_LT((x - actual).cwiseAbs().maxCoeff(), 1e-12) << d;
  }
}

TEST(BitReversal, ReverseBits) {
  EXPECT_EQ(bit_reverse(1, 7), 64u);
  EXPECT_EQ(bit_reverse(3, 7), 96u);
  EXPECT_EQ(bit_reverse(0b1011, 4), 0b1101u);
}

TEST(BitReversal, AscendingDistinctEigenvaluesGive127MinusBitrev7) {
  Vector ascending(128);
  for (long i = 0; i < 128; ++i) ascending[i] = 0.5 + i * i;
  const auto perm = bit_reversal_permutation(ascending);
  for (long j = 0; j < 128; ++j) {
    // Independent bit reversal on 7 bits through std::bitset.
    std::bitset<7> bits(j), reversed;
    for (int b = 0; b < 7; ++b) reversed[6 - b] = bits[b];
    ASSERT_EQ(perm[j], 127 - long(reversed.to_ulong())) << j;
  }
  EXPECT_EQ(perm[0], 127);
  EXPECT_EQ(perm[1], 63);
  EXPECT_EQ(perm[2], 95);
  EXPECT_EQ(perm[3], 31);
  EXPECT_EQ(perm[4], 111);
}

TEST(BitReversal, FollowsEigenvalueOrderNotIndexOrder) {
  Vector values(4);
  values << 3.0, 1.0, 4.0, 2.0;  // descending order of indices: 2, 0, 3, 1
  const auto perm = bit_reversal_permutation(values);
  // br on 2 bits: 0->0, 1->2, 2->1, 3->3; perm[br[i]] = sorted[i].
  EXPECT_EQ(perm, (std::vector<long>{2, 3, 0, 1}));
  const Matrix p = permutation_matrix(perm);
  Matrix x(1, 4);
  x << 10, 11, 12, 13;
  const Matrix y = x * p;
  for (long j = 0; j < 4; ++j) EXPECT_EQ(y(0, j), x(0, perm[j]));
}

TEST(SymmetricEigen, ReconstructsAndIsAscending) {
  const Matrix c = random_covariance(32, 1);
  const auto eigen = symmetric_eigen(c);
  for (long i = 1; i < 32; ++i) EXPECT_LT(eigen.eigenvalues[i - 1], eigen.eigenvalues[i]);
  const Matrix reconstructed = eigen.eigenvectors * eigen.eigenvalues.asDiagonal() * eigen.eigenvectors.transpose();
  EXPECT_LT((reconstructed - c).cwiseAbs().maxCoeff(), 1e-10 * c.cwiseAbs().maxCoeff());
  EXPECT_LT(orthogonality_error(eigen.eigenvectors), 1e-12);
}

TEST(SymmetricEigen, SignRuleMakesLargestEntryPositiveAndIsStable) {
  const Matrix c = random_covariance(16, 2);
  const auto first = symmetric_eigen(c);
  for (long j = 0; j < 16; ++j) {
    long largest = 0;
    first.eigenvectors.col(j).cwiseAbs().maxCoeff(&largest);
    EXPECT_GT(first.eigenvectors(largest, j), 0.0);
  }
  // The solver's own sign choice must not leak through: the negated-and-restored input (the same
  // matrix, computed differently) gives the same eigenvectors.
  const auto second = symmetric_eigen(Matrix(-(-c.transpose())));
  EXPECT_LT((first.eigenvectors - second.eigenvectors).cwiseAbs().maxCoeff(), 1e-10);
}

TEST(SymmetricEigen, DiagonalMatrixGivesUnitVectors) {
  Vector diagonal(4);
  diagonal << 4.0, 1.0, 3.0, 2.0;
  const auto eigen = symmetric_eigen(Matrix(diagonal.asDiagonal()));
  EXPECT_EQ(eigen.eigenvalues, (Vector(4) << 1.0, 2.0, 3.0, 4.0).finished());
  EXPECT_EQ(eigen.eigenvectors.col(0), Vector::Unit(4, 1));
  EXPECT_EQ(eigen.eigenvectors.col(3), Vector::Unit(4, 0));
}

TEST(Composition, NamesRoundTripAndRejectUnknown) {
  for (const auto& name : composition_names()) EXPECT_EQ(composition_name(parse_composition(name)), name);
  EXPECT_THROW(parse_composition("h_h"), std::invalid_argument);
}

TEST(Composition, EveryCompositionIsOrthogonalAndMatchesItsFactors) {
  const Matrix c = random_covariance(64, 3);
  const auto eigen = symmetric_eigen(c);
  const Matrix& u = eigen.eigenvectors;
  const Matrix h = hadamard(64);
  const Matrix p = permutation_matrix(bit_reversal_permutation(eigen.eigenvalues));
  const std::vector<std::pair<Composition, Matrix>> expected = {
      {Composition::kPlain, u},          {Composition::kPbr, p},           {Composition::kBr, u * p},
      {Composition::kBrH128, u * p * h}, {Composition::kRH, u * h},        {Composition::kHPbr, h * p},
      {Composition::kHRPbr, h * u * p},  {Composition::kHPbrR, h * p * u}, {Composition::kRHPbr, u * h * p}};
  for (const auto& [composition, matrix] : expected) {
    const Matrix r = compose_rotation(eigen, composition);
    EXPECT_LT((r - matrix).cwiseAbs().maxCoeff(), 1e-14) << composition_name(composition);
    EXPECT_LT(orthogonality_error(r), 1e-12) << composition_name(composition);
  }
}

TEST(Composition, RHPbrSendsTopEigenvectorToBitReversedColumns) {
  // Rᵀ·C·R = (H·P)ᵀ·Λ·(H·P): with R = U·H·P the rotated covariance depends only on the eigenvalues.
  const Matrix c = random_covariance(16, 4);
  const auto eigen = symmetric_eigen(c);
  const Matrix r = compose_rotation(eigen, Composition::kRHPbr);
  const Matrix hp = hadamard(16) * permutation_matrix(bit_reversal_permutation(eigen.eigenvalues));
  const Matrix expected = hp.transpose() * eigen.eigenvalues.asDiagonal() * hp;
  EXPECT_LT((r.transpose() * c * r - expected).cwiseAbs().maxCoeff(), 1e-10 * c.cwiseAbs().maxCoeff());
}

TEST(Composition, HadamardMethodIsH) {
  EXPECT_EQ((hadamard_rotation(32) - hadamard(32)).cwiseAbs().maxCoeff(), 0.0);
}

TEST(Composition, PlainWorksForAnyDimension) {
  Matrix c = Matrix::Identity(6, 6);
  c(0, 0) = 3.0;
  const auto eigen = symmetric_eigen(c);
  EXPECT_EQ(compose_rotation(eigen, Composition::kPlain), eigen.eigenvectors);
  EXPECT_THROW(compose_rotation(eigen, Composition::kRHPbr), std::invalid_argument);
}
