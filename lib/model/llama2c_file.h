// Reader for llama2.c's legacy checkpoint format (karpathy/llama2.c "version 0" .bin): a 7×int32 header and
// the fp32 tensors in a fixed order. Plain C++ (no LibTorch) so that tools which only inspect a model do not
// pay for the Torch headers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/model_config.h"

namespace oscar::model {

/// Weights in llama2.c's row-major layout: every matrix is [out, in] (y = W x), stacked over layers.
struct Llama2cWeights {
  std::vector<float> token_embedding;  ///< [vocab, dim]
  std::vector<float> rms_att;          ///< [layers, dim]
  std::vector<float> wq;               ///< [layers, dim, dim]
  std::vector<float> wk;               ///< [layers, kv_dim, dim]
  std::vector<float> wv;               ///< [layers, kv_dim, dim]
  std::vector<float> wo;               ///< [layers, dim, dim]
  std::vector<float> rms_ffn;          ///< [layers, dim]
  std::vector<float> w1;               ///< [layers, hidden, dim] (gate)
  std::vector<float> w2;               ///< [layers, dim, hidden] (down)
  std::vector<float> w3;               ///< [layers, hidden, dim] (up)
  std::vector<float> rms_final;        ///< [dim]
  std::vector<float> classifier;       ///< [vocab, dim]; empty when shared with token_embedding
};

struct Llama2cModel {
  ModelConfig config;
  Llama2cWeights weights;
};

/// Loads a llama2.c .bin. The config is a Llama with interleaved RoPE, theta 1e4, RMSNorm eps 1e-5, BOS 1, EOS
/// 2 (llama2.c's fixed choices). Throws oscar::InputError("<path>: <problem>") for a missing file, an implausible
/// header or a size that does not match the header's geometry.
Llama2cModel load_llama2c(const std::string& path);

}  // namespace oscar::model
