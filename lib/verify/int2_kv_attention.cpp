#include "verify/int2_kv_attention.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/error.h"
#include "runtime/teacher_forced.h"

namespace oscar::verify {

runtime::MixedCacheConfig cache_config(const CacheSettings& settings, const model::ModelConfig& config) {
  runtime::MixedCacheConfig cache = runtime::MixedCacheConfig::make(config.n_kv_heads, config.head_dim);
  cache.sink_tokens = settings.sink_tokens;
  cache.recent_tokens = settings.recent_tokens;
  const int group = std::min(settings.group_size, config.head_dim);
  cache.key_int2 = {config.head_dim, group, settings.key_clip, settings.scale_type, runtime::Encoding::kMinMax};
  cache.value_int2 = {config.head_dim, group, settings.value_clip, settings.scale_type, runtime::Encoding::kMinMax};
  cache.full_precision = settings.full_precision;
  cache.threads = settings.threads;
  try {
    cache.validate();
  } catch (const std::invalid_argument& error) {
    throw UsageError(std::string("cache settings: ") + error.what());
  }
  return cache;
}

void prefill_chunk_attention(const runtime::MixedCacheConfig& config, const runtime::Rotation& key_rotation,
                             const runtime::Rotation& value_rotation, const float* q, int q_heads, const float* k,
                             const float* v, int tokens, float* out) {
  // The teacher-forced form with P = T is exactly that.
  runtime::TeacherForcedOptions options;
  options.prefill_tokens = tokens;
  options.threads = config.threads;
  runtime::teacher_forced_attention(config, key_rotation, value_rotation, q, q_heads, k, v, tokens, out, options);
}

TeacherForcedKvAttention::TeacherForcedKvAttention(const runtime::MixedCacheConfig& config,
                                                   const LayerRotations& rotations, int q_heads)
    : config_(config), rotations_(rotations), q_heads_(q_heads) {}

void TeacherForcedKvAttention::attend(int layer, int start, int tokens, const float* q, const float* k, const float* v,
                                      float* out) {
  if (start != 0) throw std::logic_error("TeacherForcedKvAttention: a sequence must come in one call");
  runtime::TeacherForcedOptions options;
  options.prefill_tokens = std::min(prefill_tokens_, tokens);
  options.threads = config_.threads;
  const auto index = static_cast<size_t>(layer);
  runtime::teacher_forced_attention(config_, rotations_.key.at(index), rotations_.value.at(index), q, q_heads_, k, v,
                                    tokens, out, options);
}

ServingKvAttention::ServingKvAttention(const runtime::MixedCacheConfig& config, const LayerRotations& rotations,
                                       int q_heads)
    : config_(config), q_heads_(q_heads) {
  for (size_t layer = 0; layer < rotations.key.size(); ++layer) {
    caches_.emplace_back(config, rotations.key[layer], rotations.value[layer]);
  }
}

void ServingKvAttention::attend(int layer, int start, int tokens, const float* q, const float* k, const float* v,
                                float* out) {
  runtime::MixedKvCache& cache = caches_.at(static_cast<size_t>(layer));
  const int row = config_.kv_heads * config_.head_dim, q_row = q_heads_ * config_.head_dim;
  if (start == 0) {
    cache.clear();
    prefill_chunk_attention(config_, cache.key_rotation(), cache.value_rotation(), q, q_heads_, k, v, tokens, out);
    cache.prefill(k, v, tokens);
    return;
  }
  if (start != cache.size()) {
    throw std::logic_error("ServingKvAttention: layer " + std::to_string(layer) + " holds " + std::to_string(cache.size()) +
                           " tokens, the decoder is at " + std::to_string(start));
  }
  runtime::AttentionOptions options;
  options.threads = config_.threads;
  for (int t = 0; t < tokens; ++t) {
    cache.append(k + static_cast<size_t>(t) * row, v + static_cast<size_t>(t) * row);
    runtime::decode_attention(cache, q + static_cast<size_t>(t) * q_row, q_heads_, out + static_cast<size_t>(t) * q_row, options);
  }
}

}  // namespace oscar::verify
