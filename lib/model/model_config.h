// What a decoder-only transformer is, independent of the file it came from: the geometry and the variant
// switches (Llama 2/3, Qwen2, Qwen3) that the decoder needs. Every loader fills one of these.
#pragma once

#include <string>

namespace oscar::model {

enum class Architecture { kLlama, kQwen2, kQwen3 };

/// How RoPE pairs the channels of a head. kInterleaved rotates (x[2i], x[2i+1]) as llama2.c and llama.cpp's
/// "normal" RoPE do; kNeox rotates (x[i], x[i + d/2]) as Hugging Face's rotate_half does. The captured q/k
/// come out in the pairing of the model's own weights, so rotations fitted on one only apply to that layout.
enum class RopeStyle { kInterleaved, kNeox };

/// Llama-3.1's frequency-dependent RoPE scaling ("rope_type": "llama3" in config.json); off by default.
struct Llama3RopeScaling {
  bool enabled = false;
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int original_max_position = 8192;
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  int dim = 0;          ///< residual width (hidden_size)
  int hidden_dim = 0;   ///< SwiGLU inner width (intermediate_size)
  int n_layers = 0;
  int n_heads = 0;      ///< query heads
  int n_kv_heads = 0;   ///< key/value heads (GQA when fewer than n_heads)
  int head_dim = 0;     ///< per head; Qwen3 has head_dim * n_heads != dim
  int vocab_size = 0;
  int max_seq_len = 0;  ///< context the model supports (the KV cache's capacity)
  float rms_eps = 1e-5f;
  double rope_theta = 1e4;
  RopeStyle rope_style = RopeStyle::kNeox;
  Llama3RopeScaling rope_scaling;
  bool qkv_bias = false;         ///< Qwen2: biases on q/k/v projections
  bool qk_norm = false;          ///< Qwen3: per-head RMSNorm of q and k before RoPE
  bool tied_embeddings = false;  ///< the output classifier is the token embedding
  int bos_token = -1;            ///< -1 when the model has none
  int eos_token = -1;

  int kv_dim() const { return n_kv_heads * head_dim; }
  int q_dim() const { return n_heads * head_dim; }
};

/// "llama", "qwen2", "qwen3" (Hugging Face model_type spelling).
std::string architecture_name(Architecture architecture);
/// "interleaved" or "neox".
std::string rope_style_name(RopeStyle style);

/// Throws oscar::InputError("<source>: <problem>") when the geometry is inconsistent (non-positive sizes,
/// n_heads not a multiple of n_kv_heads, odd head_dim).
void validate_config(const ModelConfig& config, const std::string& source);

}  // namespace oscar::model
