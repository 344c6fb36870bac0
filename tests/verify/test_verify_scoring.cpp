// oscar-verify's scoring on the bundled stories260K model: the teacher-forced INT2 scoring equals decoding
// token by token through the runtime's mixed cache, fp equals the plain decoder, rotations change nothing
// while no token is INT2, and the statistics follow their formulas.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "../io/io_test_support.h"
#include "core/error.h"
#include "io/rotation_set.h"
#include "model/decoder.h"
#include "model/model_loader.h"
#include "model/random_model.h"
#include "verify/cuda_kv_attention.h"
#include "verify/int2_kv_attention.h"
#include "verify/kv_method.h"
#include "verify/method_scorer.h"
#include "runtime/teacher_forced.h"
#include "verify/statistics.h"

using namespace oscar;
using namespace oscar::verify;

namespace {

const std::string kData = OSCAR_SHARED_DATA;
const std::string kStories = kData + "/models/stories260K/stories260K.bin";

struct Fixture {
  model::LoadedModel loaded = model::load_model(kStories);
  model::Decoder decoder{loaded.config, loaded.weights};
  std::vector<int> tokens = loaded.tokenizer->encode_with_bos(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw "
      "a big, red ball. She ran to it and kicked it very hard. The ball flew over the fence and into the garden of "
      "an old man.");
};

runtime::MixedCacheConfig small_windows(const model::ModelConfig& config) {
  CacheSettings settings;
  settings.sink_tokens = 8;
  settings.recent_tokens = 16;
  return cache_config(settings, config);
}

std::vector<float> log_softmax(const std::vector<float>& logits) {
  double max = *std::max_element(logits.begin(), logits.end()), sum = 0;
  for (float x : logits) sum += std::exp(double(x) - max);
  std::vector<float> out;
  for (float x : logits) out.push_back(float(double(x) - max - std::log(sum)));
  return out;
}

TEST(VerifyScoring, TeacherForcedEqualsServingDecode) {
  Fixture f;
  const model::ModelConfig& config = f.loaded.config;
  ASSERT_GT(f.tokens.size(), 60U);
  const runtime::MixedCacheConfig cache = small_windows(config);
  for (const std::string name : {"naive", "hadamard"}) {
    const std::vector<KvMethod> methods = make_methods({name}, config, nullptr);
    MethodScorer scorer(f.decoder, methods[0], cache);
    const int prefill = 20, vocab = config.vocab_size;
    const std::vector<float> teacher = scorer.log_probs(f.tokens, prefill);

    ServingKvAttention serving(cache, methods[0].rotations, config.n_heads);
    f.decoder.set_kv_attention(&serving);
    f.decoder.reset(1);
    std::vector<std::vector<float>> decoded = {f.decoder.forward({f.tokens.begin(), f.tokens.begin() + prefill})};
    for (size_t t = prefill; t < f.tokens.size(); ++t) decoded.push_back(f.decoder.forward({f.tokens[t]}));
    f.decoder.set_kv_attention(nullptr);
    EXPECT_GT(serving.cache(0).int2_size(), 0) << "the test must reach INT2 tokens";

    // The same model in another order of float32 operations (one token per forward instead of the whole
    // sequence): k and v differ by rounding, which now and then moves an INT2 code across a rounding boundary.
    // So the bound is loose (a misplaced position, window or rotation costs far more: KL ~ 1e-2 and up), and
    // the typical difference must stay at rounding level.
    double worst = 0, sum = 0;
    for (size_t i = 0; i < decoded.size(); ++i) {
      const std::vector<float> expected = log_softmax(decoded[i]);
      const size_t row = (prefill - 1 + i) * size_t(vocab);
      for (int j = 0; j < vocab; ++j) {
        const double difference = std::abs(expected[j] - teacher[row + j]);
        worst = std::max(worst, difference);
        sum += difference;
      }
    }
    const double mean = sum / double(decoded.size() * size_t(vocab));
    EXPECT_LT(worst, 5e-3) << name;
    EXPECT_LT(mean, 1e-4) << name;
    std::printf("%s: teacher-forced vs step-by-step decode: max |Δ log p| %.2e, mean %.2e\n", name.c_str(), worst, mean);
  }
}

TEST(VerifyScoring, ServingStepsEqualTeacherForcedScoring) {
  // The stepping the CUDA runtime path uses (prefill, then one token per forward), here over the CPU runtime.
  Fixture f;
  const model::ModelConfig& config = f.loaded.config;
  const runtime::MixedCacheConfig cache = small_windows(config);
  const std::vector<KvMethod> methods = make_methods({"hadamard"}, config, nullptr, cache);
  MethodScorer scorer(f.decoder, methods[0], cache);
  for (int prefill : {0, 20}) {
    const std::vector<float> teacher = scorer.log_probs(f.tokens, prefill);
    ServingKvAttention serving(cache, methods[0].rotations, config.n_heads);
    const std::vector<float> stepped = scorer.serving_log_probs(f.tokens, prefill, serving);
    ASSERT_EQ(stepped.size(), teacher.size());
    double worst = 0, sum = 0;
    for (size_t i = 0; i < teacher.size(); ++i) {
      worst = std::max(worst, double(std::abs(stepped[i] - teacher[i])));
      sum += std::abs(stepped[i] - teacher[i]);
    }
    EXPECT_LT(worst, 5e-3) << prefill;  // the bound of TeacherForcedEqualsServingDecode, for the same reason
    EXPECT_LT(sum / double(teacher.size()), 1e-4) << prefill;
    EXPECT_GT(serving.cache(0).int2_size(), 0);
  }
}

TEST(VerifyScoringCuda, CudaInt2RuntimeMatchesTheCpuRuntime) {
  if (!cuda_int2_runtime_available()) GTEST_SKIP() << "no CUDA INT2 runtime (a build without nvcc, or no GPU)";
  model::ModelConfig c;  // the GPU cache decodes head_dim 64, 128 or 256
  c.dim = 128;
  c.hidden_dim = 256;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 64;
  c.vocab_size = 256;
  c.max_seq_len = 256;
  const model::LoadedModel loaded = model::random_model(c, 3);
  model::Decoder decoder(loaded.config, loaded.weights);
  std::vector<int> tokens;
  for (int i = 0; i < 200; ++i) tokens.push_back((i * 37 + 11) % c.vocab_size);
  CacheSettings settings;
  settings.sink_tokens = 8;
  settings.recent_tokens = 32;
  settings.full_precision = runtime::FullPrecisionType::kBFloat16;  // what the GPU cache stores
  const runtime::MixedCacheConfig cache = cache_config(settings, loaded.config);
  const std::vector<KvMethod> methods = make_methods({"hadamard"}, loaded.config, nullptr, cache);
  MethodScorer cpu(decoder, methods[0], cache), gpu(decoder, methods[0], cache), gpu_tc(decoder, methods[0], cache);
  gpu.use_cuda_int2_runtime();
  gpu_tc.use_cuda_int2_runtime(true);
  for (int prefill : {0, 100}) {
    const std::vector<float> a = cpu.log_probs(tokens, prefill);
    for (MethodScorer* device : {&gpu, &gpu_tc}) {
      const std::vector<float> b = device->log_probs(tokens, prefill);
      double worst = 0, sum = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        worst = std::max(worst, double(std::abs(a[i] - b[i])));
        sum += std::abs(a[i] - b[i]);
      }
      // Same INT2 bytes on both; decode sums in another float32 order, which can flip a code downstream.
      const char* kernel = device == &gpu ? "CUDA cores" : "tensor cores";
      EXPECT_LT(worst, 5e-3) << kernel << ", prefill " << prefill;
      EXPECT_LT(sum / double(a.size()), 1e-4) << kernel << ", prefill " << prefill;
    }
  }
}

TEST(VerifyScoring, FullPrecisionIsThePlainDecoder) {
  Fixture f;
  const std::vector<KvMethod> methods = make_methods({"fp"}, f.loaded.config, nullptr);
  MethodScorer scorer(f.decoder, methods[0], small_windows(f.loaded.config));
  const std::vector<float> all = scorer.log_probs(f.tokens, 0);
  const std::vector<double> expected = f.decoder.next_token_log_probs(f.tokens);
  // LibTorch 1.13 gives the same bits on both paths; 2.x picks other CPU kernels for the two shapes, which
  // moves a log-prob by about 1e-6 relative (seen with 2.11), so allow 1e-5 relative.
  for (size_t t = 0; t + 1 < f.tokens.size(); ++t) {
    const double got = all[t * size_t(f.loaded.config.vocab_size) + size_t(f.tokens[t + 1])];
    EXPECT_NEAR(got, double(float(expected[t])), 1e-5 * std::max(1.0, std::abs(expected[t]))) << t;
  }
  EXPECT_DOUBLE_EQ(scorer.stored_bits(100), 1600.0);
}

TEST(VerifyScoring, RotationsAreInvisibleWhileNothingIsInt2) {
  Fixture f;
  const model::ModelConfig& config = f.loaded.config;
  CacheSettings settings;
  settings.sink_tokens = 512;  // longer than the text: every row stays full precision (float32)
  settings.recent_tokens = 8;
  const runtime::MixedCacheConfig cache = cache_config(settings, config);
  const std::vector<KvMethod> methods = make_methods({"fp", "hadamard"}, config, nullptr);
  MethodScorer fp(f.decoder, methods[0], cache), rotated(f.decoder, methods[1], cache);
  const std::vector<float> a = fp.log_probs(f.tokens, 0), b = rotated.log_probs(f.tokens, 0);
  const int vocab = config.vocab_size;
  // Rotated float32 rows change only the rounding (log-probs to ~1e-6, KL to ~1e-7).
  for (size_t t = 0; t < f.tokens.size(); ++t) EXPECT_LT(kl_divergence(&a[t * vocab], &b[t * vocab], vocab), 1e-6) << t;
  EXPECT_DOUBLE_EQ(rotated.stored_bits(100), 1600.0);
}

TEST(VerifyScoring, Int2ChangesDistributionsAndCountsBits) {
  Fixture f;
  const model::ModelConfig& config = f.loaded.config;
  const runtime::MixedCacheConfig cache = small_windows(config);
  const std::vector<KvMethod> methods = make_methods({"fp", "naive"}, config, nullptr);
  MethodScorer fp(f.decoder, methods[0], cache), naive(f.decoder, methods[1], cache);
  const std::vector<float> a = fp.log_probs(f.tokens, 0), b = naive.log_probs(f.tokens, 0);
  const int vocab = config.vocab_size;
  // Positions whose cache has no INT2 token yet (t + 1 − S0 < W + 8) agree up to rounding (0 with LibTorch
  // 1.13, 2e-8 with 2.11, whose kernels depend on the call's shape); later ones do not.
  EXPECT_LT(kl_divergence(&a[20 * vocab], &b[20 * vocab], vocab), 1e-6);
  double later = 0;
  for (size_t t = 40; t < f.tokens.size(); ++t) later += kl_divergence(&a[t * vocab], &b[t * vocab], vocab);
  EXPECT_GT(later, 1e-3);
  // 100 tokens: the sink and window rows in 16 bits, the demoted ones in INT2.
  const std::int64_t demoted = runtime::demoted_tokens(cache, 100);
  ASSERT_GT(demoted, 0);
  const double int2_bits = 2.0 + 2.0 * 16 / config.head_dim;  // codes + float16 scale and zero per row (G = d)
  EXPECT_NEAR(naive.stored_bits(100), 16.0 * double(100 - demoted) + int2_bits * double(demoted), 1e-9);
}

TEST(VerifyStatistics, KlFollowsItsDefinition) {
  const std::vector<double> p = {0.5, 0.25, 0.25}, q = {0.25, 0.25, 0.5};
  std::vector<float> lp, lq;
  for (size_t i = 0; i < p.size(); ++i) {
    lp.push_back(float(std::log(p[i])));
    lq.push_back(float(std::log(q[i])));
  }
  const double expected = 0.5 * std::log(2.0) + 0.25 * std::log(0.5);  // Σ p log(p/q)
  EXPECT_NEAR(kl_divergence(lp.data(), lq.data(), 3), expected, 1e-7);
  EXPECT_EQ(kl_divergence(lp.data(), lp.data(), 3), 0.0);
  const std::vector<float> ties = {1, 3, 3, 2};
  EXPECT_EQ(argmax(ties.data(), 4), 1);
}

TEST(VerifyStatistics, PairedBootstrap) {
  // Identical answers: no drop, a degenerate interval.
  const std::vector<int> same = {1, 0, 1, 1, 0};
  const DropInterval none = paired_bootstrap_drop(same, same, 500, 7);
  EXPECT_EQ(none.drop, 0.0);
  EXPECT_EQ(none.low, 0.0);
  EXPECT_EQ(none.high, 0.0);
  // Every reference answer right, every other wrong: drop 100 points with certainty.
  const DropInterval total = paired_bootstrap_drop({1, 1, 1, 1}, {0, 0, 0, 0}, 200, 1);
  EXPECT_EQ(total.drop, 100.0);
  EXPECT_EQ(total.low, 100.0);
  EXPECT_EQ(total.high, 100.0);
  // 200 questions, 30 lost and 10 gained: drop 10 points; the interval holds it, is seeded and has the
  // width of the paired standard error (sd of the differences / √n ≈ 2.0 points, so ≈ ±3.9).
  std::vector<int> reference(200, 1), other(200, 1);
  for (int i = 0; i < 30; ++i) other[size_t(i)] = 0;
  for (int i = 30; i < 40; ++i) reference[size_t(i)] = 0;
  const DropInterval drop = paired_bootstrap_drop(reference, other, 2000, 42);
  EXPECT_DOUBLE_EQ(drop.drop, 10.0);
  EXPECT_LT(drop.low, 10.0);
  EXPECT_GT(drop.high, 10.0);
  const double mean = 0.1, second = 40.0 / 200.0, sd = std::sqrt(second - mean * mean) / std::sqrt(200.0) * 100;
  EXPECT_NEAR(drop.high - drop.low, 2 * 1.96 * sd, 0.25 * 2 * 1.96 * sd);
  const DropInterval again = paired_bootstrap_drop(reference, other, 2000, 42);
  EXPECT_EQ(again.low, drop.low);
  EXPECT_EQ(again.high, drop.high);
}

TEST(VerifyRotations, LoaderRejectsBadSets) {
  const model::LoadedModel loaded = model::load_model(kStories);
  const model::ModelConfig& config = loaded.config;
  test::TempDir dir;
  const int d = config.head_dim;
  auto write_set = [&](const std::string& name, int layers, std::vector<float> matrix) {
    io::RotationSet set;
    set.objective = "qqt_r_h_pbr";
    for (int i = 0; i < layers; ++i) set.layers.push_back({i, 1, d, matrix, std::vector<float>(size_t(d), 1.0f)});
    io::write_rotation_set(dir / name, set);
  };
  std::vector<float> identity(size_t(d * d), 0.0f);
  for (int i = 0; i < d; ++i) identity[size_t(i * d + i)] = 1.0f;
  write_set("k_rotation_qqt_r_h_pbr.pt", config.n_layers, identity);
  test::expect_input_error_with_prefix([&] { load_rotations(dir.path(), config); }, dir.path(), "v_rotation_");
  write_set("v_rotation_sst_r_h_pbr.pt", config.n_layers - 1, identity);
  test::expect_input_error_with_prefix([&] { load_rotations(dir.path(), config); }, dir / "v_rotation_sst_r_h_pbr.pt",
                                       "no rotation for layer 4");
  std::vector<float> scaled = identity;
  scaled[0] = 2.0f;
  write_set("v_rotation_sst_r_h_pbr.pt", config.n_layers, scaled);
  test::expect_input_error_with_prefix([&] { load_rotations(dir.path(), config); }, dir / "v_rotation_sst_r_h_pbr.pt",
                                       "not orthogonal");
  write_set("v_rotation_sst_r_h_pbr.pt", config.n_layers, identity);
  const LayerRotations rotations = load_rotations(dir.path(), config);
  EXPECT_EQ(rotations.key.size(), size_t(config.n_layers));
  EXPECT_EQ(rotations.value_objective, "qqt_r_h_pbr");
  EXPECT_THROW(make_methods({"oscar"}, config, nullptr), UsageError);
  EXPECT_THROW(parse_method_list("fp,bogus"), UsageError);
  EXPECT_THROW(parse_method_list("fp,fp"), UsageError);
}

}  // namespace
