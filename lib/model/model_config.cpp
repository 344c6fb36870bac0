#include "model/model_config.h"

#include "core/error.h"

namespace oscar::model {

std::string architecture_name(Architecture architecture) {
  switch (architecture) {
    case Architecture::kLlama: return "llama";
    case Architecture::kQwen2: return "qwen2";
    case Architecture::kQwen3: return "qwen3";
  }
  return "?";
}

std::string rope_style_name(RopeStyle style) { return style == RopeStyle::kInterleaved ? "interleaved" : "neox"; }

void validate_config(const ModelConfig& c, const std::string& source) {
  auto fail = [&](const std::string& problem) { throw InputError(source + ": " + problem); };
  if (c.dim <= 0 || c.hidden_dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.head_dim <= 0 ||
      c.vocab_size <= 0 || c.max_seq_len <= 0) {
    fail("non-positive model size (dim " + std::to_string(c.dim) + ", hidden " + std::to_string(c.hidden_dim) +
         ", layers " + std::to_string(c.n_layers) + ", heads " + std::to_string(c.n_heads) + "/" +
         std::to_string(c.n_kv_heads) + ", head_dim " + std::to_string(c.head_dim) + ", vocab " +
         std::to_string(c.vocab_size) + ", context " + std::to_string(c.max_seq_len) + ")");
  }
  if (c.n_heads % c.n_kv_heads != 0) {
    fail(std::to_string(c.n_heads) + " query heads are not a multiple of " + std::to_string(c.n_kv_heads) + " KV heads");
  }
  if (c.head_dim % 2 != 0) fail("head_dim " + std::to_string(c.head_dim) + " is odd (RoPE rotates pairs)");
  if (!(c.rms_eps > 0) || !(c.rope_theta > 0)) fail("rms_norm_eps and rope_theta must be positive");
}

}  // namespace oscar::model
