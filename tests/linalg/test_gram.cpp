// OpenBLAS-backed Gram updates against plain Eigen products of the same formulas.
#include <gtest/gtest.h>

#include "linalg/gram.h"

using namespace oscar::linalg;

namespace {

Matrix lower_of(const Matrix& m) { return m.triangularView<Eigen::Lower>(); }

}  // namespace

TEST(Gram, AddGramLowerEqualsXXt) {
  const Matrix block = Matrix::Random(16, 40);
  Matrix sum = Matrix::Zero(16, 16);
  add_gram_lower(sum, block, 30);  // only the first 30 columns count
  const Matrix expected = block.leftCols(30) * block.leftCols(30).transpose();
  EXPECT_LT((sum - lower_of(expected)).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_EQ(sum(0, 15), 0.0);  // the upper triangle is untouched
}

TEST(Gram, WeightedGramKeepsNegativeWeights) {
  const Matrix block = Matrix::Random(8, 20);
  Vector weights = Vector::Random(20);  // both signs
  Matrix sum = Matrix::Zero(8, 8);
  add_weighted_gram_lower(sum, block, 20, weights);
  const Matrix expected = block * weights.asDiagonal() * block.transpose();
  EXPECT_LT((sum - lower_of(expected)).cwiseAbs().maxCoeff(), 1e-12);
}

TEST(Gram, QuadraticFormsEqualXtAX) {
  const Matrix x = Matrix::Random(12, 9);
  const Matrix a = x * x.transpose();  // symmetric
  const Matrix block = Matrix::Random(12, 15);
  Vector out;
  Matrix scratch;
  quadratic_forms(a, block, 15, out, scratch);
  ASSERT_EQ(out.size(), 15);
  for (long j = 0; j < 15; ++j) EXPECT_NEAR(out[j], block.col(j).dot(a * block.col(j)), 1e-10);
}
