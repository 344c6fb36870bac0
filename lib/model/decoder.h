// A Llama decoder (RMSNorm, RoPE, GQA attention, SwiGLU) on LibTorch, float32 on the CPU, with a KV cache for
// incremental generation and the capture hook of capture.h. One sequence at a time.
//
// LibTorch types appear here only as forward declarations, so this header is cheap to include; the Torch
// headers are confined to decoder.cpp.
#pragma once

#include <memory>
#include <vector>

#include "model/capture.h"
#include "model/llama2c_file.h"

namespace oscar::model {

class Decoder {
 public:
  /// Takes the weights (moved into tensors, no second copy).
  explicit Decoder(Llama2cModel model);
  ~Decoder();
  Decoder(Decoder&&) noexcept;
  Decoder& operator=(Decoder&&) noexcept;

  const ModelConfig& config() const;

  /// Runs `tokens` at positions position()..position()+T-1, appends their K/V to the cache and returns the
  /// logits of the last token ([vocab]). Throws std::invalid_argument when the cache (seq_len) would
  /// overflow or an id is out of range. `sink`, if given, sees every layer's q/k/v.
  std::vector<float> forward(const std::vector<int>& tokens, CaptureSink* sink = nullptr);

  /// Tokens already in the cache.
  int position() const;
  /// Empties the cache (a new sequence).
  void reset();

  /// The cached keys/values of one layer for positions [0, position()): [position(), Hkv, d] views.
  at::Tensor cached_keys(int layer) const;
  at::Tensor cached_values(int layer) const;

  /// Greedy decoding: feeds `prompt` (which should start with BOS), then appends the argmax token until
  /// `max_new_tokens` were generated, `stop_token` was produced, or the context is full. Returns only the
  /// generated ids. Starts from an empty cache.
  std::vector<int> generate_greedy(const std::vector<int>& prompt, int max_new_tokens, int stop_token = -1,
                                   CaptureSink* sink = nullptr);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace oscar::model
