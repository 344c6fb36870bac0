// Teacher-forced attention where the compressed part of the cache comes from a runtime::KvQuantizer (the
// baselines of the field: naive-sym, KIVI, TurboQuant, eOptShrinkQ, ...), at the same windows as the OSCAR
// runtime: sink S0 and recent window W in full precision, the tokens in between compressed. Tokens are
// compressed in steps of G = lcm(8, quantizer granules): position t sees m(t) = G·⌊(t+1−S0−W)/G⌋ compressed
// tokens (0 while negative), the rule of runtime/teacher_forced.h with the demotion step widened to whole
// granules (G = lcm(8, granules): KIVI's token groups). Positions before `prefill_tokens` attend at full precision.
//
// The m(T) tokens compressed at the end of the sequence are reconstructed once and each position t picks the
// full-precision or the reconstructed row for its first m(t): exact for per-token methods and whole granules;
// for whole-sequence methods (eOptShrinkQ) the low-rank part is fitted on that final segment, as its paper
// evaluates it on whole windows (earlier positions see rows fitted with later tokens).
// Plain loops (float dot products, double softmax sums), query heads on `threads` threads, O(T²·Hq·d): meant
// for evaluation on short windows.
#pragma once

#include <memory>

#include "model/kv_attention.h"
#include "runtime/kv_quantizer.h"

namespace oscar::verify {

struct QuantizerWindows {
  int sink_tokens = 64;
  int recent_tokens = 256;
};

class QuantizerKvAttention : public model::KvAttention {
 public:
  QuantizerKvAttention(const QuantizerWindows& windows, const runtime::KvQuantizer& key_quantizer,
                       const runtime::KvQuantizer& value_quantizer, int q_heads, int kv_heads, int head_dim,
                       int threads = 1);
  void set_prefill_tokens(int tokens) { prefill_tokens_ = tokens; }
  /// Needs start = 0 (the whole sequence in one call).
  void attend(int layer, int start, int tokens, const float* q, const float* k, const float* v, float* out) override;

  /// Compressed tokens of a sequence of `tokens` tokens once all are in the cache.
  int compressed_tokens(int tokens) const;
  /// Bits per compressed K/V element of the last sequence seen (mean over layers, keys and values).
  double compressed_bits_per_element() const;

 private:
  QuantizerWindows windows_;
  const runtime::KvQuantizer& key_quantizer_;
  const runtime::KvQuantizer& value_quantizer_;
  int q_heads_, kv_heads_, head_dim_, threads_;
  int prefill_tokens_ = 0;
  double bits_ = 0, elements_ = 0;
};

}  // namespace oscar::verify
