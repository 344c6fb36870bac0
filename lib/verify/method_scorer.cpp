#include "verify/method_scorer.h"

#include <algorithm>

#include "core/error.h"
#include "runtime/bits_per_element.h"
#include "runtime/teacher_forced.h"
#include "verify/cuda_kv_attention.h"
#include "verify/quantizer_kv_attention.h"

namespace oscar::verify {
namespace {

/// Installs an attention on the decoder for the lifetime of the guard (nullptr: the decoder's own).
class AttentionGuard {
 public:
  AttentionGuard(model::Decoder& decoder, model::KvAttention* attention) : decoder_(decoder) {
    decoder_.set_kv_attention(attention);
  }
  ~AttentionGuard() { decoder_.set_kv_attention(nullptr); }
  AttentionGuard(const AttentionGuard&) = delete;
  AttentionGuard& operator=(const AttentionGuard&) = delete;

 private:
  model::Decoder& decoder_;
};

}  // namespace

MethodScorer::MethodScorer(model::Decoder& decoder, const KvMethod& method, const runtime::MixedCacheConfig& cache)
    : decoder_(decoder), method_(method), cache_(cache) {}

void MethodScorer::use_cuda_int2_runtime(bool tensor_cores) {
  if (method_.full_precision || method_.uses_quantizer()) return;
  make_cuda_serving_attention(cache_, method_.rotations, decoder_.config().n_heads, 16, tensor_cores);  // checks build and geometry
  cuda_int2_ = true;
  cuda_tensor_cores_ = tensor_cores;
}

/// Prefill (at least the first token), then one decode step per token: the distributions serving computes.
std::vector<float> MethodScorer::serving_log_probs(const std::vector<int>& tokens, int prefill_tokens,
                                                   model::KvAttention& attention) {
  const int vocab = decoder_.config().vocab_size;
  std::vector<float> result(tokens.size() * static_cast<size_t>(vocab));
  AttentionGuard guard(decoder_, &attention);
  decoder_.reset(1);
  const size_t prefill = std::min(tokens.size(), static_cast<size_t>(std::max(prefill_tokens, 1)));
  for (size_t begin = 0; begin < tokens.size();) {
    const size_t end = begin == 0 ? prefill : begin + 1;
    decoder_.forward_distributions({tokens.begin() + std::ptrdiff_t(begin), tokens.begin() + std::ptrdiff_t(end)},
                                   [&](int first, int n, const float* block) {
                                     std::copy(block, block + static_cast<size_t>(n) * vocab,
                                               result.begin() + std::ptrdiff_t(begin + size_t(first)) * vocab);
                                   });
    begin = end;
  }
  return result;
}

/// Teacher-forced distributions of `tokens` with `attention` installed (nullptr: the decoder's own).
std::vector<float> MethodScorer::teacher_forced(const std::vector<int>& tokens, model::KvAttention* attention) {
  const int vocab = decoder_.config().vocab_size;
  std::vector<float> result(tokens.size() * static_cast<size_t>(vocab));
  AttentionGuard guard(decoder_, attention);
  decoder_.next_token_distributions(tokens, [&](int first, int n, const float* block) {
    std::copy(block, block + static_cast<size_t>(n) * vocab, result.begin() + static_cast<std::ptrdiff_t>(first) * vocab);
  });
  return result;
}

std::vector<float> MethodScorer::log_probs(const std::vector<int>& tokens, int prefill_tokens) {
  if (cuda_int2_) {
    const std::unique_ptr<model::KvAttention> attention =
        make_cuda_serving_attention(cache_, method_.rotations, decoder_.config().n_heads, static_cast<int>(tokens.size()),
                                    cuda_tensor_cores_);
    return serving_log_probs(tokens, prefill_tokens, *attention);
  }
  if (method_.full_precision) return teacher_forced(tokens, nullptr);
  if (method_.uses_quantizer()) {
    const model::ModelConfig& config = decoder_.config();
    QuantizerKvAttention attention({cache_.sink_tokens, cache_.recent_tokens}, *method_.key_quantizer,
                                   *method_.value_quantizer, config.n_heads, config.n_kv_heads, config.head_dim,
                                   cache_.threads);
    attention.set_prefill_tokens(prefill_tokens);
    std::vector<float> result = teacher_forced(tokens, &attention);
    compressed_bits_ = attention.compressed_bits_per_element();
    compressed_tokens_ = attention.compressed_tokens(static_cast<int>(tokens.size()));
    return result;
  }
  TeacherForcedKvAttention attention(cache_, method_.rotations, decoder_.config().n_heads);
  attention.set_prefill_tokens(prefill_tokens);
  return teacher_forced(tokens, &attention);
}

std::vector<int> MethodScorer::generate(const std::vector<int>& prompt, const model::GenerationOptions& options) {
  if (method_.uses_quantizer()) throw UsageError("--generate: " + method_.name + " is scored teacher-forced only (drop --generate)");
  if (method_.full_precision) {
    AttentionGuard guard(decoder_, nullptr);
    return model::generate(decoder_, {prompt}, options).front();
  }
  if (cuda_int2_) {
    const int capacity = std::min(decoder_.config().max_seq_len, static_cast<int>(prompt.size()) + options.max_new_tokens);
    const std::unique_ptr<model::KvAttention> attention =
        make_cuda_serving_attention(cache_, method_.rotations, decoder_.config().n_heads, capacity, cuda_tensor_cores_);
    AttentionGuard guard(decoder_, attention.get());
    return model::generate(decoder_, {prompt}, options).front();
  }
  ServingKvAttention attention(cache_, method_.rotations, decoder_.config().n_heads);
  AttentionGuard guard(decoder_, &attention);
  return model::generate(decoder_, {prompt}, options).front();
}

double MethodScorer::stored_bits(std::int64_t tokens) const {
  if (method_.full_precision) return static_cast<double>(kServingFullPrecisionBits) * static_cast<double>(tokens);
  if (method_.uses_quantizer()) {
    const double compressed = static_cast<double>(std::min<std::int64_t>(compressed_tokens_, tokens));
    return static_cast<double>(kServingFullPrecisionBits) * (static_cast<double>(tokens) - compressed) + compressed_bits_ * compressed;
  }
  const std::int64_t demoted = runtime::demoted_tokens(cache_, static_cast<int>(tokens));
  // Keys and values may differ in format; a KV element is either, so average the two.
  const double int2_bits = 0.5 * (runtime::int2_bits_per_element(cache_.key_int2) + runtime::int2_bits_per_element(cache_.value_int2));
  return static_cast<double>(kServingFullPrecisionBits) * static_cast<double>(tokens - demoted) + int2_bits * static_cast<double>(demoted);
}

}  // namespace oscar::verify
