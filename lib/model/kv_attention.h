// Attention over a KV cache that lives outside the decoder: how oscar-verify runs the model with a real INT2
// cache (the runtime's mixed cache) instead of the decoder's own full-precision one.
//
// Plain pointers, not tensors: implementations are plain C++ (lib/runtime, lib/verify) and never compile
// the LibTorch headers. The decoder hands over float32 host copies, which costs a conversion per layer and
// call; fine for evaluation, not meant for serving.
#pragma once

namespace oscar::model {

class KvAttention {
 public:
  virtual ~KvAttention() = default;
  /// Attention of `tokens` new tokens of sequence 0 at positions start .. start+tokens−1 in `layer`.
  /// q is [tokens, Hq, d], k and v are [tokens, Hkv, d]: float32, row-major, after q/k norm and RoPE (exactly
  /// what enters a KV cache). The implementation takes k and v into its own cache (start = 0 begins a new
  /// sequence) and writes out [tokens, Hq, d]: softmax(q·kᵀ/√d)·v per query head over that cache, causal,
  /// before o_proj.
  virtual void attend(int layer, int start, int tokens, const float* q, const float* k, const float* v,
                      float* out) = 0;
};

}  // namespace oscar::model
