// Gram updates (OpenBLAS and Eigen kernels) against plain Eigen products of the same formulas.
#include <gtest/gtest.h>

#include "linalg/gram.h"

using namespace oscar::linalg;

namespace {

Matrix lower_of(const Matrix& m) { return m.triangularView<Eigen::Lower>(); }

class Gram : public ::testing::TestWithParam<GramKernels> {};

}  // namespace

TEST_P(Gram, AddGramLowerEqualsXXt) {
  const Matrix block = Matrix::Random(16, 40);
  Matrix sum = Matrix::Zero(16, 16);
  add_gram_lower(sum, block, 30, GetParam());  // only the first 30 columns count
  const Matrix expected = block.leftCols(30) * block.leftCols(30).transpose();
  EXPECT_LT((sum - lower_of(expected)).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_EQ(sum(0, 15), 0.0);  // the upper triangle is untouched
}

TEST_P(Gram, WeightedGramKeepsNegativeWeights) {
  const Matrix block = Matrix::Random(8, 20);
  Vector weights = Vector::Random(20);  // both signs
  Matrix sum = Matrix::Zero(8, 8);
  add_weighted_gram_lower(sum, block, 20, weights, GetParam());
  const Matrix expected = block * weights.asDiagonal() * block.transpose();
  EXPECT_LT((sum - lower_of(expected)).cwiseAbs().maxCoeff(), 1e-12);
}

TEST_P(Gram, QuadraticFormsEqualXtAX) {
  const Matrix x = Matrix::Random(12, 9);
  const Matrix a = x * x.transpose();  // symmetric
  const Matrix block = Matrix::Random(12, 15);
  Vector out;
  Matrix scratch;
  quadratic_forms(a, block, 15, out, scratch, GetParam());
  ASSERT_EQ(out.size(), 15);
  for (long j = 0; j < 15; ++j) EXPECT_NEAR(out[j], block.col(j).dot(a * block.col(j)), 1e-10);
}

TEST_P(Gram, RepeatedUpdatesAreBitReproducible) {
  const Matrix block = Matrix::Random(128, 1024);
  Matrix first = Matrix::Zero(128, 128), second = Matrix::Zero(128, 128);
  for (int i = 0; i < 3; ++i) add_gram_lower(first, block, 1024, GetParam());
  for (int i = 0; i < 3; ++i) add_gram_lower(second, block, 1024, GetParam());
  EXPECT_TRUE(first == second);
}

INSTANTIATE_TEST_SUITE_P(Kernels, Gram, ::testing::Values(GramKernels::kOpenBlas, GramKernels::kEigen),
                         [](const ::testing::TestParamInfo<GramKernels>& info) {
                           return info.param == GramKernels::kOpenBlas ? std::string("OpenBlas") : std::string("Eigen");
                         });
