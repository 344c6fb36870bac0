// A decoder-only transformer on LibTorch: Llama 2/3 (GQA, RoPE theta, Llama-3.1 RoPE scaling), Qwen2 (q/k/v
// biases) and Qwen3 (per-head q/k RMSNorm before RoPE), tied or separate classifier; float32 or bfloat16; CPU,
// or CUDA when the LibTorch build has it. It holds a KV cache for a batch of sequences, each at its own
// position, so that several prompts are prefilled in one call and then decoded token by token.
//
// LibTorch types appear here only as forward declarations, so this header is cheap to include; the Torch
// headers are confined to decoder.cpp.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/capture.h"
#include "model/kv_attention.h"
#include "model/model_config.h"
#include "model/model_weights.h"

namespace oscar::model {

struct DecoderOptions {
  DType dtype = DType::kFloat32;  ///< kFloat32 or kBFloat16 (weights, activations and the KV cache)
  std::string device = "cpu";     ///< "cpu" or "cuda" ("cuda:N")
};

/// "float32" | "bfloat16" -> DType; throws oscar::UsageError otherwise.
DType parse_compute_dtype(const std::string& name);

class Decoder {
 public:
  /// Copies (or, for float32 on the CPU, adopts without copying) the weights. Throws oscar::InputError for a
  /// missing or mis-shaped tensor, oscar::UsageError for a device this LibTorch build lacks.
  Decoder(const ModelConfig& config, const ModelWeights& weights, const DecoderOptions& options = {});
  ~Decoder();
  Decoder(Decoder&&) noexcept;
  Decoder& operator=(Decoder&&) noexcept;

  const ModelConfig& config() const;
  const DecoderOptions& options() const;

  /// Empties the cache and makes room for `batch_size` sequences, all at position 0.
  void reset(int batch_size = 1);
  int batch_size() const;
  /// Tokens already in sequence b's cache.
  int position(int sequence = 0) const;

  /// Appends tokens[b] to sequence b for every b < batch_size() (an empty list leaves that sequence alone)
  /// and returns each sequence's last-token logits as float32 ([vocab]; empty for an empty list). Sequences
  /// may have different lengths and positions: shorter ones are padded, and padding never reaches a cache.
  /// `sink`, if given, sees every layer's q/k/v of every non-empty sequence. Throws std::invalid_argument
  /// when a sequence would exceed max_seq_len or an id is out of range.
  std::vector<std::vector<float>> forward_batch(const std::vector<std::vector<int>>& tokens,
                                                CaptureSink* sink = nullptr);
  /// Batch-of-one form of forward_batch (requires batch_size() == 1).
  std::vector<float> forward(const std::vector<int>& tokens, CaptureSink* sink = nullptr);

  /// Teacher-forced scoring from an empty cache: log p(tokens[t+1] | tokens[0..t]) for t = 0..T-2, natural
  /// log, computed in float32 and returned as double. Resets the cache to one sequence.
  std::vector<double> next_token_log_probs(const std::vector<int>& tokens);

  /// Teacher-forced distributions from an empty cache: on_block(first, n, log_probs) receives the natural-log
  /// next-token distributions [n, vocab] (float32, row-major) of positions first .. first+n−1, in order,
  /// for every position of `tokens` (position t predicts tokens[t+1]; the last one predicts what follows).
  /// Resets the cache to one sequence.
  void next_token_distributions(const std::vector<int>& tokens,
                                const std::function<void(int first, int n, const float* log_probs)>& on_block);

  /// Like next_token_distributions, but continues sequence 0's cache (batch of one) instead of starting a new
  /// one: `first` counts from the chunk's first token. Serving-style scoring calls it with the prefill, then
  /// with one token at a time.
  void forward_distributions(const std::vector<int>& tokens,
                             const std::function<void(int first, int n, const float* log_probs)>& on_block);

  /// Routes attention through `attention` (nullptr: the decoder's own cache and attention) for the following
  /// calls; needs a batch of one. The decoder still fills its own cache, so position() and cached_keys()
  /// keep working. Not owned; it must outlive its use.
  void set_kv_attention(KvAttention* attention);

  /// The cached keys/values of one layer and sequence for positions [0, position(b)): [position, Hkv, d]
  /// views in the model's dtype and device.
  at::Tensor cached_keys(int layer, int sequence = 0) const;
  at::Tensor cached_values(int layer, int sequence = 0) const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace oscar::model
