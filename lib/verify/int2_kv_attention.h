// Attention of the model over the runtime's mixed INT2 cache (sink and recent window in full precision, the
// rest INT2; reference doc §6), plugged into the decoder through model::KvAttention. Two forms:
//
//  - TeacherForcedKvAttention scores a whole sequence in one forward: positions before `prefill_tokens`
//    attend causally at full precision (prefill), later ones see exactly the cache that decoding them one
//    by one would leave (runtime::teacher_forced_attention). Used for log-likelihoods and perplexity.
//  - ServingKvAttention keeps one runtime::MixedKvCache per layer: a call at position 0 prefills a new
//    sequence (full-precision causal attention within the chunk, then MixedKvCache::prefill); any later call
//    appends token by token and reads the cache with runtime::decode_attention. Used for generation, and the
//    ground truth the teacher-forced form is tested against.
#pragma once

#include <vector>

#include "model/kv_attention.h"
#include "model/model_config.h"
#include "runtime/decode_attention.h"
#include "runtime/mixed_cache.h"
#include "verify/kv_method.h"

namespace oscar::verify {

/// The cache settings of oscar-verify's command line (the same for every method).
struct CacheSettings {
  int sink_tokens = 64;
  int recent_tokens = 256;
  int group_size = 128;  ///< capped at head_dim (tiny models have d = 8 or 16)
  double key_clip = runtime::int2_format::kDefaultKeyClipRatio;
  double value_clip = runtime::int2_format::kDefaultValueClipRatio;
  runtime::ScaleType scale_type = runtime::ScaleType::kFloat16;
  /// Storage of sink and recent rows: float32 for float32 models, so the only difference from fp is INT2;
  /// bfloat16 (as serving stores them) for bfloat16 models.
  runtime::FullPrecisionType full_precision = runtime::FullPrecisionType::kFloat32;
  int threads = 1;
};

/// The runtime configuration for this model. Throws oscar::UsageError for inconsistent settings (windows not
/// multiples of 8, a group size the INT2 format does not support).
runtime::MixedCacheConfig cache_config(const CacheSettings& settings, const model::ModelConfig& config);

/// A prefill chunk attending to itself at full precision (the rotated rows as the cache stores them): what
/// serving computes before the chunk enters the cache.
void prefill_chunk_attention(const runtime::MixedCacheConfig& config, const runtime::Rotation& key_rotation,
                             const runtime::Rotation& value_rotation, const float* q, int q_heads, const float* k,
                             const float* v, int tokens, float* out);

class TeacherForcedKvAttention : public model::KvAttention {
 public:
  TeacherForcedKvAttention(const runtime::MixedCacheConfig& config, const LayerRotations& rotations, int q_heads);
  /// Prefill length P of the next sequence (0: every position is a decode step).
  void set_prefill_tokens(int tokens) { prefill_tokens_ = tokens; }
  /// Needs start = 0 (the whole sequence in one call).
  void attend(int layer, int start, int tokens, const float* q, const float* k, const float* v, float* out) override;

 private:
  runtime::MixedCacheConfig config_;
  const LayerRotations& rotations_;
  int q_heads_ = 0;
  int prefill_tokens_ = 0;
};

class ServingKvAttention : public model::KvAttention {
 public:
  ServingKvAttention(const runtime::MixedCacheConfig& config, const LayerRotations& rotations, int q_heads);
  void attend(int layer, int start, int tokens, const float* q, const float* k, const float* v, float* out) override;
  const runtime::MixedKvCache& cache(int layer) const { return caches_.at(static_cast<size_t>(layer)); }

 private:
  runtime::MixedCacheConfig config_;
  int q_heads_ = 0;
  std::vector<runtime::MixedKvCache> caches_;
};

}  // namespace oscar::verify
