// Reader for llama2.c's legacy checkpoint format (karpathy/llama2.c "version 0" .bin): a 7×int32 header and
// the fp32 tensors in a fixed order. Plain C++ (no LibTorch) so that tools which only inspect a model do not
// pay for the Torch headers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace oscar::model {

/// Geometry of a decoder-only Llama model. head_dim = dim / n_heads.
struct ModelConfig {
  int dim = 0;         ///< residual width
  int hidden_dim = 0;  ///< SwiGLU inner width
  int n_layers = 0;
  int n_heads = 0;     ///< query heads
  int n_kv_heads = 0;  ///< key/value heads (GQA when fewer than n_heads)
  int vocab_size = 0;  ///< always positive here; the file's sign only says whether the classifier is shared
  int seq_len = 0;     ///< longest context the model was trained for (the KV cache's capacity)
  bool shared_classifier = true;
  float rms_eps = 1e-5f;
  float rope_theta = 1e4f;

  int head_dim() const { return dim / n_heads; }
  int kv_dim() const { return n_kv_heads * head_dim(); }
};

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

/// Loads a llama2.c .bin. Throws oscar::InputError("<path>: <problem>") for a missing file, an implausible
/// header or a size that does not match the header's geometry.
Llama2cModel load_llama2c(const std::string& path);

}  // namespace oscar::model
