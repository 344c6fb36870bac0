// The paper's central claim, on a synthetic model built to show it: when post-RoPE keys have a few massive
// outlier channels (as Qwen3's and Llama's do), INT2 without a rotation (naive: the identity, a deliberately
// broken rotation at very low bits) loses far more of the model's next-token distribution than the calibrated
// OSCAR rotations. The bundled tiny models have no such channels (naive INT2 happens to beat the rotations
// there), so this test makes them: a small random Llama-style model whose keys get a massive RoPE pair.
//
// OSCAR is calibrated in process as oscar-calibrate does it (pipeline::accumulate_model_statistics, then
// calib::fit_outputs), its zoo files are written and read back through verify::load_rotations as oscar-verify
// reads them, and held-out sequences are scored teacher-forced for fp, naive, hadamard and oscar; the test
// compares mean KL(fp ‖ method) over the positions whose cache holds INT2 rows.
//
// How the outliers are made. In real models the massive key channels meet small query components (otherwise
// they would swamp every attention score), so the injection moves scale from queries to keys: for every KV
// head, the k_proj rows of the lowest-frequency RoPE pair are multiplied by F and the same rows of every
// query head by 1/F. RoPE rotates the pair as a whole, so q·k, and with it the full-precision model, is
// unchanged (checked below): only what the cache has to store changes. Scaling the key rows alone (queries as
// they are) also makes the pair dominate the attention scores; that variant is scored for the record.
//
// head_dim is 16 on purpose: the key clip ratio 0.96 clamps the ⌊0.04·d⌋ largest |x| of a row before INT2,
// which is nothing at d = 16 but the two largest at d = 64 (five at d = 128), i.e. at those sizes the clip
// alone removes a two-channel outlier for naive INT2 too.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>

#include "../io/io_test_support.h"
#include "calib/calibration_outputs.h"
#include "calib/head_statistics.h"
#include "io/rotation_set.h"
#include "model/decoder.h"
#include "model/random_model.h"
#include "pipeline/model_calibration.h"
#include "runtime/teacher_forced.h"
#include "verify/int2_kv_attention.h"
#include "verify/kv_method.h"
#include "verify/method_scorer.h"
#include "verify/statistics.h"

using namespace oscar;
using namespace oscar::verify;

namespace {

constexpr float kOutlierFactor = 20.0f;
constexpr std::uint64_t kModelSeed = 7;
constexpr std::uint64_t kCalibrationSeed = 11;
constexpr std::uint64_t kHeldOutSeed = 12345;
constexpr int kCalibrationSequences = 16, kHeldOutSequences = 4, kSequenceTokens = 128;

/// random_model's weights (±0.5/√fan_in) give attention scores of std ~0.1 and next-token distributions close
/// to uniform, on which INT2 moves KL by ~1e-6 whatever the method. Sharper queries and classifier make the
/// cache matter (control KL ~1e-4) without changing anything else about the model.
constexpr float kQueryScale = 4.0f, kClassifierScale = 8.0f;

enum class Outliers {
  kNone,         ///< the control
  kBalanced,     ///< keys × F, queries × 1/F on the pair: same fp model, massive key channels
  kKeysOnly,     ///< keys × F only: the pair also dominates the attention scores
};

model::ModelConfig tiny_llama() {
  model::ModelConfig c;
  c.architecture = model::Architecture::kLlama;
  c.dim = 64;
  c.hidden_dim = 128;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 256;
  c.max_seq_len = 256;
  c.rope_style = model::RopeStyle::kInterleaved;
  return c;
}

/// The channels of the lowest-frequency RoPE pair of a head: with interleaved RoPE pair i is (2i, 2i + 1),
/// so pair d/2 − 1 is the head's last two channels.
std::vector<int> outlier_channels(int head_dim) { return {head_dim - 2, head_dim - 1}; }

/// Multiplies rows of a [heads · d, dim] projection: `pair_factor` on the outlier channels of every head,
/// `factor` on all rows (applied on top).
void scale_projection(model::ModelWeights& weights, const std::string& name, int heads, int head_dim,
                      float pair_factor, float factor) {
  const model::WeightTensor& original = weights.at(name);
  const std::int64_t columns = original.shape.at(1);
  std::vector<float> w = original.to_floats();
  const std::vector<int> pair = outlier_channels(head_dim);
  for (int h = 0; h < heads; ++h) {
    for (int channel = 0; channel < head_dim; ++channel) {
      const bool outlier = std::find(pair.begin(), pair.end(), channel) != pair.end();
      const float scale = factor * (outlier ? pair_factor : 1.0f);
      const size_t row = size_t(h * head_dim + channel);
      for (std::int64_t j = 0; j < columns; ++j) w[row * size_t(columns) + size_t(j)] *= scale;
    }
  }
  weights.add(name, model::WeightTensor::from_floats(std::move(w), original.shape));
}

model::LoadedModel make_model(Outliers outliers) {
  const model::ModelConfig c = tiny_llama();
  model::LoadedModel model = model::random_model(c, kModelSeed);
  const float key_pair = outliers == Outliers::kNone ? 1.0f : kOutlierFactor;
  const float query_pair = outliers == Outliers::kBalanced ? 1.0f / kOutlierFactor : 1.0f;
  for (int layer = 0; layer < c.n_layers; ++layer) {
    scale_projection(model.weights, model::layer_tensor_name(layer, "self_attn.k_proj.weight"), c.n_kv_heads,
                     c.head_dim, key_pair, 1.0f);
    scale_projection(model.weights, model::layer_tensor_name(layer, "self_attn.q_proj.weight"), c.n_heads,
                     c.head_dim, query_pair, kQueryScale);
  }
  const model::WeightTensor& head = model.weights.at("lm_head.weight");
  std::vector<float> w = head.to_floats();
  for (float& x : w) x *= kClassifierScale;
  model.weights.add("lm_head.weight", model::WeightTensor::from_floats(std::move(w), head.shape));
  return model;
}

std::vector<std::vector<int>> random_sequences(int count, int tokens, int vocab, std::uint64_t seed) {
  std::mt19937_64 generator(seed);
  std::vector<std::vector<int>> sequences(size_t(count), std::vector<int>(size_t(tokens), 0));
  for (auto& sequence : sequences) {
    for (int& token : sequence) token = int(generator() % std::uint64_t(vocab));
  }
  return sequences;
}

/// Smallest ratio, over layers and KV heads, of the post-RoPE key energy of the weaker outlier channel to the
/// median channel's (the diagonal of mean k·kᵀ, from a ktk calibration pass over `sequences`).
double smallest_outlier_energy_ratio(model::Decoder& decoder, const std::vector<std::vector<int>>& sequences) {
  const model::ModelConfig& c = decoder.config();
  const calib::CalibrationState state = pipeline::accumulate_model_statistics(decoder, sequences, "ktk", 4);
  double smallest = INFINITY;
  for (int layer = 0; layer < c.n_layers; ++layer) {
    for (int h = 0; h < c.n_kv_heads; ++h) {
      const linalg::Matrix covariance = calib::head_covariance(state.heads.at({layer, h}), calib::Covariance::kKtk,
                                                               c.n_heads / c.n_kv_heads);
      std::vector<double> energy;
      for (int i = 0; i < c.head_dim; ++i) energy.push_back(covariance(i, i));
      std::vector<double> sorted = energy;
      std::nth_element(sorted.begin(), sorted.begin() + c.head_dim / 2, sorted.end());
      const double median = sorted[size_t(c.head_dim / 2)];
      for (int channel : outlier_channels(c.head_dim)) smallest = std::min(smallest, energy[size_t(channel)] / median);
    }
  }
  return smallest;
}

/// OSCAR's rotations for the model, calibrated on `sequences`, written to `dir` as zoo files and read back.
LayerRotations calibrate_oscar(model::Decoder& decoder, const std::vector<std::vector<int>>& sequences,
                               const test::TempDir& dir) {
  const calib::CalibrationState state = pipeline::accumulate_model_statistics(decoder, sequences, "qqt_sst", 4);
  const std::vector<calib::OutputFile> outputs = calib::fit_outputs(state, state.layer_ids(), calib::FitOptions{});
  EXPECT_EQ(outputs.size(), 2U);
  for (const calib::OutputFile& output : outputs) io::write_rotation_set(dir / output.name, output.rotations);
  return load_rotations(dir.path(), decoder.config());
}

struct CaseResult {
  double energy_ratio = 0;                 ///< smallest outlier / median key channel energy
  double naive = 0, hadamard = 0, oscar = 0;  ///< mean KL(fp ‖ method) where INT2 rows exist
  std::vector<std::vector<float>> fp;      ///< fp log-probs per held-out sequence
};

/// Builds the model, calibrates OSCAR, scores every method on the held-out sequences and prints the KLs.
CaseResult run_case(Outliers outliers, const char* label) {
  const auto start = std::chrono::steady_clock::now();
  const model::LoadedModel loaded = make_model(outliers);
  const model::ModelConfig& config = loaded.config;
  model::Decoder decoder(config, loaded.weights);
  const auto calibration = random_sequences(kCalibrationSequences, kSequenceTokens, config.vocab_size, kCalibrationSeed);
  const auto held_out = random_sequences(kHeldOutSequences, kSequenceTokens, config.vocab_size, kHeldOutSeed);

  CaseResult result;
  result.energy_ratio = smallest_outlier_energy_ratio(decoder, {calibration.begin(), calibration.begin() + 4});
  test::TempDir dir;
  const LayerRotations oscar = calibrate_oscar(decoder, calibration, dir);
  EXPECT_EQ(oscar.key_objective, "qqt_r_h_pbr");
  EXPECT_EQ(oscar.value_objective, "sst_r_h_pbr");

  CacheSettings settings;  // default group (= d here), clip 0.96 / 0.92, float16 scales
  settings.sink_tokens = 8;
  settings.recent_tokens = 16;
  const runtime::MixedCacheConfig cache = cache_config(settings, config);
  const std::vector<KvMethod> methods = make_methods({"fp", "naive", "hadamard", "oscar"}, config, &oscar);
  std::vector<std::vector<std::vector<float>>> log_probs(methods.size());  // [method][sequence]
  for (size_t m = 0; m < methods.size(); ++m) {
    MethodScorer scorer(decoder, methods[m], cache);
    for (const auto& tokens : held_out) log_probs[m].push_back(scorer.log_probs(tokens, 0));
  }
  const int vocab = config.vocab_size;
  std::vector<double> kl(methods.size(), 0.0);
  for (size_t m = 1; m < methods.size(); ++m) {
    std::int64_t positions = 0;
    for (size_t s = 0; s < held_out.size(); ++s) {
      for (int t = 0; t < int(held_out[s].size()); ++t) {
        if (runtime::demoted_tokens(cache, t + 1) == 0) continue;  // nothing INT2 yet: every method is fp
        const size_t row = size_t(t) * size_t(vocab);
        kl[m] += kl_divergence(&log_probs[0][s][row], &log_probs[m][s][row], vocab);
        ++positions;
      }
    }
    EXPECT_GT(positions, 0);
    kl[m] /= double(positions);
    EXPECT_TRUE(std::isfinite(kl[m])) << methods[m].name;
    EXPECT_GT(kl[m], 0.0) << methods[m].name;
  }
  result.naive = kl[1];
  result.hadamard = kl[2];
  result.oscar = kl[3];
  result.fp = std::move(log_probs[0]);

  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: outlier/median key energy >= %.1f; KL(fp||naive) = %.3e, KL(fp||hadamard) = %.3e, "
              "KL(fp||oscar) = %.3e; naive/oscar = %.1f, hadamard/oscar = %.2f (%.2f s)\n",
              label, result.energy_ratio, result.naive, result.hadamard, result.oscar, result.naive / result.oscar,
              result.hadamard / result.oscar, seconds);
  return result;
}

TEST(VerifyOutliers, NaiveInt2IsFarWorseThanOscarOnMassiveKeyChannels) {
  const CaseResult control = run_case(Outliers::kNone, "control (no outliers)");
  const CaseResult outliers = run_case(Outliers::kBalanced, "keys x20 / queries x1/20 on the lowest RoPE pair");

  // The injection made massive key channels (×20 on the rows: ~400× the median energy)...
  EXPECT_GE(outliers.energy_ratio, 50.0);
  EXPECT_LT(control.energy_ratio, 5.0);
  // ... and left the full-precision model as it was (q·k unchanged up to rounding).
  double worst = 0;
  for (size_t s = 0; s < control.fp.size(); ++s) {
    for (size_t i = 0; i < control.fp[s].size(); ++i) worst = std::max(worst, double(std::abs(control.fp[s][i] - outliers.fp[s][i])));
  }
  std::printf("fp log-probs, outliers vs control: max |difference| %.2e\n", worst);
  EXPECT_LT(worst, 1e-3) << "the balanced injection must not change the fp model";

  // Measured (model seeds 1-10): naive/oscar 22-40 (37 at this seed), hadamard/oscar 1.9-2.7 (2.4),
  // naive 40-70x its control KL, while OSCAR stays within ~2x of its control.
  EXPECT_GT(outliers.naive, 10.0 * outliers.oscar);
  EXPECT_GT(outliers.naive, 10.0 * control.naive);
  EXPECT_LT(outliers.oscar, outliers.hadamard);
}

TEST(VerifyOutliers, KeysOnlyOutliersAreReportedWithoutOrdering) {
  // Key rows ×20 with the queries as they are: the pair now dominates the attention scores, OSCAR's query
  // covariance does not single it out, and measured naive/oscar is 1.1-2.0 with OSCAR behind Hadamard
  // (naive/hadamard 2.3-3.0). Reported; only naive vs Hadamard is asserted.
  const CaseResult outliers = run_case(Outliers::kKeysOnly, "keys x20 on the lowest RoPE pair (queries unchanged)");
  EXPECT_GE(outliers.energy_ratio, 50.0);
  EXPECT_GT(outliers.naive, 1.5 * outliers.hadamard);
}

}  // namespace
