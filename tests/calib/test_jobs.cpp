// Small pieces of the jobs: --layers parsing, the zoo tag, method tables.
#include <gtest/gtest.h>

#include "calib/calibration_job.h"
#include "core/error.h"

using namespace oscar;
using namespace oscar::calib;

TEST(LayerSelection, ParsesRangesAgainstAvailableLayers) {
  const std::vector<int> layers = {0, 1, 2, 3, 4};
  EXPECT_EQ(parse_layer_selection("", layers), layers);
  EXPECT_EQ(parse_layer_selection("1:3", layers), (std::vector<int>{1, 2}));
  EXPECT_EQ(parse_layer_selection("3:", layers), (std::vector<int>{3, 4}));
  EXPECT_EQ(parse_layer_selection("2", layers), (std::vector<int>{2}));
  EXPECT_THROW(parse_layer_selection("7:9", layers), UsageError);
  EXPECT_THROW(parse_layer_selection("a:b", layers), UsageError);
  EXPECT_THROW(parse_layer_selection("1:2x", layers), UsageError);
}

TEST(CalibrationTag, MatchesTheZooNaming) {
  EXPECT_EQ(calibration_tag(20000, 83, 128), "seq20000_prompt83_group128");
}

TEST(Methods, TargetsAndStatistics) {
  const auto targets = method_targets("qqt_sst");
  ASSERT_EQ(targets.size(), 2u);
  EXPECT_EQ(targets[0].target, Target::kKey);
  EXPECT_EQ(targets[0].covariance, Covariance::kQqt);
  EXPECT_EQ(targets[1].target, Target::kValue);
  EXPECT_EQ(targets[1].covariance, Covariance::kSst);
  const StatisticsMask mask = statistics_for(targets);
  EXPECT_TRUE(mask.query && mask.weighted_value && !mask.key_value);
  EXPECT_TRUE(statistics_for(method_targets("vtv")).key_value);
  EXPECT_THROW(method_targets("hadamard"), std::invalid_argument);
  EXPECT_THROW(parse_granularity("head"), std::invalid_argument);
}
