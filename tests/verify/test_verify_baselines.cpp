// The baselines of the field inside oscar-verify, on the bundled TinyStories-656K model (head_dim 16):
// at 8 bits every method is nearly lossless, the generic quantizer path agrees with the INT2 runtime path on
// the methods both can express (naive-asym = naive, quarot = hadamard), and stored bits follow each method's
// accounting.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "model/decoder.h"
#include "model/model_loader.h"
#include "runtime/baseline_quantizers.h"
#include "verify/int2_kv_attention.h"
#include "verify/kv_method.h"
#include "verify/method_scorer.h"
#include "verify/statistics.h"

using namespace oscar;
using namespace oscar::verify;

namespace {

const std::string kModel = std::string(OSCAR_SHARED_DATA) + "/models/tinystories-656k";

struct Fixture {
  model::LoadedModel loaded = model::load_model(kModel);
  model::Decoder decoder{loaded.config, loaded.weights};
  std::vector<int> tokens = loaded.tokenizer->encode_with_bos(
      "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw "
      "a big, red ball. She ran to it and kicked it very hard. The ball flew over the fence and into the garden of "
      "an old man. The old man was grumpy and did not like children. Lily was scared, but she wanted her ball back.");
  runtime::MixedCacheConfig cache = [&] {
    CacheSettings settings;
    settings.sink_tokens = 8;
    settings.recent_tokens = 16;
    return cache_config(settings, loaded.config);
  }();
  std::vector<float> reference = MethodScorer(decoder, make_methods({"fp"}, loaded.config, nullptr)[0], cache).log_probs(tokens, 0);

  double mean_kl(const KvMethod& method) {
    MethodScorer scorer(decoder, method, cache);
    const std::vector<float> own = scorer.log_probs(tokens, 0);
    const int vocab = loaded.config.vocab_size;
    double sum = 0;
    for (size_t t = 0; t < tokens.size(); ++t) sum += kl_divergence(&reference[t * vocab], &own[t * vocab], vocab);
    return sum / double(tokens.size());
  }
};

KvMethod with_quantizers(const std::string& name, std::shared_ptr<const runtime::KvQuantizer> key,
                         std::shared_ptr<const runtime::KvQuantizer> value) {
  KvMethod method;
  method.name = name;
  method.key_quantizer = std::move(key);
  method.value_quantizer = std::move(value);
  return method;
}

TEST(VerifyBaselines, EveryMethodAtEightBitsIsNearlyLossless) {
  Fixture f;
  ASSERT_GE(f.tokens.size(), 8U + 16U + 32U);  // sink + window + one KIVI group
  const std::uint64_t seed = 7;
  const std::vector<KvMethod> methods = {
      with_quantizers("kivi8", std::make_shared<runtime::KiviQuantizer>(runtime::KvKind::kKey, 32, 8),
                      std::make_shared<runtime::KiviQuantizer>(runtime::KvKind::kValue, 32, 8)),
      with_quantizers("turboquant8", std::make_shared<runtime::TurboQuantizer>(8, seed), std::make_shared<runtime::TurboQuantizer>(8, seed)),
      with_quantizers("eoptshrinkq8", std::make_shared<runtime::EOptShrinkQuantizer>(8, seed, 0),
                      std::make_shared<runtime::EOptShrinkQuantizer>(8, seed, 0))};
  for (const KvMethod& method : methods) {
    const double kl = f.mean_kl(method);
    EXPECT_LT(kl, 1e-3) << method.name;
    EXPECT_GT(kl, 0.0) << method.name << ": the compressed segment must be reached";
    std::printf("%s: mean KL %.3e\n", method.name.c_str(), kl);
  }
  // The 2-bit methods are far from lossless on the same text (the test can tell them apart).
  EXPECT_GT(f.mean_kl(make_methods({"turboquant-k2v2"}, f.loaded.config, nullptr, f.cache)[0]), 1e-3);
}

TEST(VerifyBaselines, GenericPathAgreesWithTheInt2Runtime) {
  Fixture f;
  const auto methods = make_methods({"naive", "naive-asym", "hadamard", "quarot"}, f.loaded.config, nullptr, f.cache);
  const double naive = f.mean_kl(methods[0]), naive_asym = f.mean_kl(methods[1]);
  const double hadamard = f.mean_kl(methods[2]), quarot = f.mean_kl(methods[3]);
  std::printf("naive %.6f naive-asym %.6f hadamard %.6f quarot %.6f\n", naive, naive_asym, hadamard, quarot);
  // Same format, same windows; only float32 vs double attention arithmetic differs.
  EXPECT_NEAR(naive_asym, naive, 0.01 * naive);
  EXPECT_NEAR(quarot, hadamard, 0.01 * hadamard);
  EXPECT_GT(std::abs(naive - hadamard), 0.05 * naive) << "the two pairs must be distinguishable";
}

TEST(VerifyBaselines, StoredBitsFollowEachMethod) {
  Fixture f;
  const int d = f.loaded.config.head_dim;  // 16
  const auto methods = make_methods({"turboquant-k3v3", "naive-sym", "kivi2"}, f.loaded.config, nullptr, f.cache);
  const int tokens = int(f.tokens.size());
  for (const KvMethod& method : methods) {
    MethodScorer scorer(f.decoder, method, f.cache);
    scorer.log_probs(f.tokens, 0);
    const double bits = scorer.stored_bits(tokens);
    // Compressed rows: whole steps of lcm(8, granule) beyond sink 8 + window 16.
    const int step = method.name == "kivi2" ? 32 : 8;
    const int compressed = step * ((tokens - 8 - 16) / step);
    double per_element = 0;
    if (method.name == "turboquant-k3v3") per_element = 3.0 + 16.0 / d;       // codes + a float16 norm per row
    if (method.name == "naive-sym") per_element = 2.0 + 16.0 / d;             // codes + a float16 scale per row
    if (method.name == "kivi2") per_element = 0.5 * ((2.0 + 32.0 / 32) + (2.0 + 32.0 / d));  // K per channel / 32 tokens, V per row
    EXPECT_NEAR(bits, 16.0 * (tokens - compressed) + per_element * compressed, 1e-6) << method.name;
  }
}

}  // namespace
