// The background accumulator: the same sums, bit for bit, as accumulating the same chunks serially with the
// same kernels; errors of a chunk reach the caller; the pending-bytes bound never deadlocks.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <random>

#include "calib/chunk_accumulation.h"
#include "calib/method.h"
#include "pipeline/capture_accumulator.h"

using namespace oscar;
using namespace oscar::pipeline;

namespace {

constexpr int kHq = 4, kHkv = 2, kDim = 16, kLayers = 3, kChunks = 5;

HostTensor random_rows(std::mt19937& generator, std::int64_t tokens, std::int64_t heads) {
  std::normal_distribution<float> normal;
  HostTensor tensor;
  tensor.shape = {tokens, heads, kDim};
  std::vector<float> values(std::size_t(tokens * heads * kDim));
  for (float& value : values) value = normal(generator);
  tensor.bytes.resize(values.size() * sizeof(float));
  std::memcpy(tensor.bytes.data(), values.data(), tensor.bytes.size());
  return tensor;
}

std::vector<CapturedChunk> random_chunks() {
  std::mt19937 generator(7);
  std::vector<CapturedChunk> chunks;
  for (int chunk = 1; chunk <= kChunks; ++chunk) {
    for (int layer = 0; layer < kLayers; ++layer) {
      const std::int64_t tokens = 3 + 7 * chunk;  // uneven lengths
      chunks.push_back({layer, chunk, random_rows(generator, tokens, kHq), random_rows(generator, tokens, kHkv),
                        random_rows(generator, tokens, kHkv)});
    }
  }
  return chunks;
}

calib::CalibrationState empty_state() {
  calib::CalibrationState state;
  state.geometry = {kHq, kHkv, kDim};
  state.mask = calib::statistics_for(calib::method_targets("qqt_sst"));
  return state;
}

/// The reference: the chunks accumulated in order on this thread.
calib::CalibrationState serial(const std::vector<CapturedChunk>& chunks) {
  calib::CalibrationState state = empty_state();
  for (const auto& c : chunks) {
    const calib::ChunkTensors tensors{c.layer, c.chunk_id, &c.query, &c.key, &c.value};
    for (int h = 0; h < kHkv; ++h) {
      calib::accumulate_first_pass(state.head(c.layer, h), tensors, h, kHq / kHkv, state.mask,
                                   calib::NonfinitePolicy::kError, linalg::GramKernels::kEigen);
    }
  }
  for (auto& [key, head] : state.heads) head.weighting_query_covariance = calib::query_covariance(head, kHq / kHkv);
  for (const auto& c : chunks) {
    const calib::ChunkTensors tensors{c.layer, c.chunk_id, nullptr, &c.key, &c.value};
    for (int h = 0; h < kHkv; ++h) {
      calib::accumulate_second_pass(state.head(c.layer, h), tensors, h, calib::NonfinitePolicy::kError,
                                    linalg::GramKernels::kEigen);
    }
  }
  return state;
}

}  // namespace

TEST(CaptureAccumulator, SameBitsAsSerialAccumulation) {
  const auto chunks = random_chunks();
  const calib::CalibrationState expected = serial(chunks);
  calib::CalibrationState state = empty_state();
  {
    // A bound smaller than one chunk: every push waits for the previous chunk (and must not deadlock).
    CaptureAccumulator accumulator(state, nullptr, 1);
    for (const auto& chunk : chunks) accumulator.push(chunk);
    accumulator.drain();
    for (auto& [key, head] : state.heads) head.weighting_query_covariance = calib::query_covariance(head, kHq / kHkv);
    accumulator.start_pass(CapturePass::kSecond);
    for (auto chunk : chunks) {
      chunk.query = HostTensor();  // the second pass needs no queries
      accumulator.push(std::move(chunk));
    }
    accumulator.drain();
  }
  ASSERT_EQ(state.heads.size(), expected.heads.size());
  for (const auto& [key, head] : expected.heads) {
    const calib::HeadStatistics& got = state.heads.at(key);
    EXPECT_TRUE(got.query_outer_sum == head.query_outer_sum);
    EXPECT_TRUE(got.weighted_value_outer_sum == head.weighted_value_outer_sum);
    EXPECT_EQ(got.weight_sum, head.weight_sum);
    EXPECT_EQ(got.query_tokens, head.query_tokens);
    EXPECT_EQ(got.first_pass_chunks, head.first_pass_chunks);
    EXPECT_EQ(got.second_pass_chunks, head.second_pass_chunks);
  }
}

TEST(CaptureAccumulator, ErrorOfAChunkReachesTheCaller) {
  auto chunks = random_chunks();
  float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(chunks[4].query.bytes.data(), &nan, sizeof nan);
  calib::CalibrationState state = empty_state();
  CaptureAccumulator accumulator(state, nullptr, std::size_t(1) << 20);
  try {
    for (const auto& chunk : chunks) accumulator.push(chunk);  // may already throw here
    accumulator.drain();
    FAIL() << "no error for a NaN query";
  } catch (const InputError& error) {
    EXPECT_NE(std::string(error.what()).find("chunk 2"), std::string::npos) << error.what();
  }
}
