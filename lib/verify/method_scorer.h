// One KV method on one decoder: teacher-forced next-token distributions and generation, with the cache the
// method stores (the decoder's own for fp, the runtime's mixed INT2 cache for the others), plus the storage
// cost of a sequence under the method.
#pragma once

#include <cstdint>
#include <vector>

#include "model/decoder.h"
#include "model/generation.h"
#include "runtime/mixed_cache.h"
#include "verify/int2_kv_attention.h"
#include "verify/kv_method.h"

namespace oscar::verify {

/// Serving stores sink and recent rows in 16 bits; effective bits count them so even when the evaluation keeps
/// them in float32 to isolate the INT2 error.
inline constexpr int kServingFullPrecisionBits = 16;

class MethodScorer {
 public:
  /// The decoder, method and config must outlive the scorer. The decoder is shared between scorers: each
  /// call installs (or removes) its own attention.
  MethodScorer(model::Decoder& decoder, const KvMethod& method, const runtime::MixedCacheConfig& cache);

  /// INT2 runtime methods (naive, hadamard, oscar) then run through the CUDA runtime's cache
  /// (verify/cuda_kv_attention.h): scoring decodes token by token, as serving does, instead of the
  /// teacher-forced single forward. tensor_cores chooses the runtime's tensor-core INT2 decode kernel. Throws
  /// oscar::UsageError when the build or the model cannot.
  void use_cuda_int2_runtime(bool tensor_cores = false);

  const KvMethod& method() const { return method_; }
  const model::ModelConfig& decoder_config() const { return decoder_.config(); }

  /// Natural-log next-token distributions [T, vocab] of every position, teacher-forced from an empty cache;
  /// positions before `prefill_tokens` form the prefill chunk, later ones are decode steps.
  std::vector<float> log_probs(const std::vector<int>& tokens, int prefill_tokens);

  /// The same distributions computed as serving does: prefill (at least the first token) through `attention`,
  /// then one decode step per token. What log_probs does on the CUDA runtime; public for tests.
  std::vector<float> serving_log_probs(const std::vector<int>& tokens, int prefill_tokens, model::KvAttention& attention);

  /// Generation after `prompt` (prefill, then one decode step per token through the method's cache). The
  /// baselines are scored teacher-forced only (UsageError).
  std::vector<int> generate(const std::vector<int>& prompt, const model::GenerationOptions& options);

  /// Bits the method stores for a sequence of `tokens` tokens (per KV element, summed over tokens): 16 per
  /// token for fp; for INT2 methods 16 for the sink and window tokens, the INT2 format's bits for demoted ones;
  /// for the baselines what their quantizers reported for the last sequence scored.
  double stored_bits(std::int64_t tokens) const;

 private:
  model::Decoder& decoder_;
  const KvMethod& method_;
  runtime::MixedCacheConfig cache_;
  double compressed_bits_ = 0;          ///< baselines: bits per compressed element of the last sequence scored
  std::int64_t compressed_tokens_ = 0;  ///< and its compressed tokens
  bool cuda_int2_ = false;
  bool cuda_tensor_cores_ = false;

  std::vector<float> teacher_forced(const std::vector<int>& tokens, model::KvAttention* attention);
};

}  // namespace oscar::verify
