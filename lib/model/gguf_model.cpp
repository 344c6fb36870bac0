// GGUF models (llama.cpp's container) mapped onto the Hugging Face names and layout of model_weights.h, so
// the decoder sees one layout whatever the file: tensors are dequantised to float32 and, for the llama
// architecture, the rows of Q and K are put back from llama.cpp's interleaved-RoPE order into Hugging Face's
// rotate_half order.
#include <algorithm>
#include <climits>

#include "core/error.h"
#include "model/gguf_file.h"
#include "model/gguf_tokenizer.h"
#include "model/model_loader.h"

namespace oscar::model {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw InputError(path + ": " + problem);
}

Architecture parse_architecture(const GgufFile& file) {
  const std::string name = file.get_string("general.architecture");
  if (name == "llama") return Architecture::kLlama;
  if (name == "qwen2") return Architecture::kQwen2;
  if (name == "qwen3") return Architecture::kQwen3;
  fail(file.path(), "unsupported architecture " + name + " (supported: llama, qwen2, qwen3)");
}

int to_int(const GgufFile& file, const std::string& key, std::int64_t value) {
  if (value < INT_MIN || value > INT_MAX) fail(file.path(), "metadata " + key + " is out of range");
  return int(value);
}
int metadata_int(const GgufFile& file, const std::string& key) { return to_int(file, key, file.get_int(key)); }
int metadata_int(const GgufFile& file, const std::string& key, int fallback) {
  return to_int(file, key, file.get_int(key, fallback));
}

/// Settings the decoder does not implement are refused rather than silently run with different numbers.
void reject_unsupported_variants(const GgufFile& file, const std::string& arch, const ModelConfig& c) {
  if (file.find_tensor("rope_freqs.weight") != nullptr) {
    fail(file.path(), "tensor rope_freqs.weight (Llama-3.1 RoPE scaling) is unsupported in GGUF files; use the "
                      "model's Hugging Face directory instead");
  }
  const std::string scaling = file.get_string(arch + ".rope.scaling.type", "none");
  if (scaling != "none") fail(file.path(), "unsupported RoPE scaling " + scaling);
  if (metadata_int(file, arch + ".rope.dimension_count", c.head_dim) != c.head_dim) {
    fail(file.path(), "partial RoPE (" + arch + ".rope.dimension_count != head_dim) is unsupported");
  }
  if (metadata_int(file, arch + ".attention.value_length", c.head_dim) != c.head_dim) {
    fail(file.path(), "value heads of a different width than key heads are unsupported");
  }
}

ModelConfig parse_config(const GgufFile& file) {
  ModelConfig c;
  c.architecture = parse_architecture(file);
  const std::string arch = architecture_name(c.architecture);  // GGUF keys use the same spelling
  c.dim = metadata_int(file, arch + ".embedding_length");
  c.hidden_dim = metadata_int(file, arch + ".feed_forward_length");
  c.n_layers = metadata_int(file, arch + ".block_count");
  c.n_heads = metadata_int(file, arch + ".attention.head_count");
  c.n_kv_heads = metadata_int(file, arch + ".attention.head_count_kv", c.n_heads);
  if (c.n_heads <= 0) fail(file.path(), "metadata " + arch + ".attention.head_count must be positive");
  c.head_dim = metadata_int(file, arch + ".attention.key_length", c.dim / c.n_heads);
  const GgufTensorInfo* embedding = file.find_tensor("token_embd.weight");
  const int embedding_rows = embedding != nullptr && embedding->shape.size() == 2 ? to_int(file, "token_embd rows", embedding->shape[0]) : 0;
  c.vocab_size = metadata_int(file, arch + ".vocab_size", embedding_rows);
  c.max_seq_len = metadata_int(file, arch + ".context_length");
  c.rms_eps = float(file.get_float(arch + ".attention.layer_norm_rms_epsilon", 1e-5));
  c.rope_theta = file.get_float(arch + ".rope.freq_base", 1e4);
  c.rope_style = RopeStyle::kNeox;  // llama's Q/K rows are un-permuted below; Qwen is NeoX natively
  c.qkv_bias = c.architecture == Architecture::kQwen2 || file.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.qk_norm = c.architecture == Architecture::kQwen3;
  c.tied_embeddings = file.find_tensor("output.weight") == nullptr;
  c.bos_token = metadata_int(file, "tokenizer.ggml.bos_token_id", -1);
  c.eos_token = metadata_int(file, "tokenizer.ggml.eos_token_id", -1);
  validate_config(c, file.path());
  reject_unsupported_variants(file, arch, c);
  return c;
}

/// llama.cpp's converter reorders each head's rows for interleaved RoPE:
///   gguf = hf.reshape(heads, 2, head_dim/2, in).swapaxes(1, 2).reshape(out, in)
/// i.e. gguf row h*hd + 2i + j holds hf row h*hd + j*hd/2 + i. This puts them back.
std::vector<float> unpermute_rows(const std::vector<float>& gguf, int heads, int head_dim, std::int64_t in) {
  std::vector<float> hf(gguf.size());
  const int half = head_dim / 2;
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < half; ++i) {
      for (int j = 0; j < 2; ++j) {
        const std::int64_t from = std::int64_t(h) * head_dim + 2 * i + j;
        const std::int64_t to = std::int64_t(h) * head_dim + j * half + i;
        std::copy_n(gguf.begin() + from * in, in, hf.begin() + to * in);
      }
    }
  }
  return hf;
}

/// Reads GGUF tensors into a ModelWeights under Hugging Face names.
class WeightMapper {
 public:
  WeightMapper(const GgufFile& file, const ModelConfig& config)
      : file_(file), config_(config), weights_(file.path()) {}

  /// Copies `gguf_name` as `hf_name` (the shape check comes later, by HF name).
  void map(const std::string& gguf_name, const std::string& hf_name) { map_rows(gguf_name, hf_name, 0); }

  /// Same, undoing llama.cpp's Q/K row permutation for `heads` heads when the architecture is llama.
  void map_rows(const std::string& gguf_name, const std::string& hf_name, int heads) {
    const GgufTensorInfo* info = file_.find_tensor(gguf_name);
    if (info == nullptr) fail(file_.path(), "missing tensor " + gguf_name);
    std::vector<float> values = file_.dequantize(*info);
    const bool permuted = heads > 0 && config_.architecture == Architecture::kLlama;
    if (permuted) {
      const std::int64_t rows = info->shape.empty() ? 0 : info->shape.front();  // GGUF allows 0-dim tensors
      if (rows != std::int64_t(heads) * config_.head_dim) {
        fail(file_.path(), "tensor " + gguf_name + " has " + std::to_string(rows) + " rows, expected " +
                               std::to_string(std::int64_t(heads) * config_.head_dim));
      }
      values = unpermute_rows(values, heads, config_.head_dim, info->numel() / rows);
    }
    weights_.add(hf_name, WeightTensor::from_floats(std::move(values), info->shape));
  }

  ModelWeights take() { return std::move(weights_); }

 private:
  const GgufFile& file_;
  const ModelConfig& config_;
  ModelWeights weights_;
};

ModelWeights read_weights(const GgufFile& file, const ModelConfig& c) {
  WeightMapper m(file, c);
  m.map("token_embd.weight", "model.embed_tokens.weight");
  for (int i = 0; i < c.n_layers; ++i) {
    const std::string blk = "blk." + std::to_string(i) + ".";
    auto hf = [i](const char* suffix) { return layer_tensor_name(i, suffix); };
    m.map(blk + "attn_norm.weight", hf("input_layernorm.weight"));
    m.map_rows(blk + "attn_q.weight", hf("self_attn.q_proj.weight"), c.n_heads);
    m.map_rows(blk + "attn_k.weight", hf("self_attn.k_proj.weight"), c.n_kv_heads);
    m.map(blk + "attn_v.weight", hf("self_attn.v_proj.weight"));
    m.map(blk + "attn_output.weight", hf("self_attn.o_proj.weight"));
    if (c.qkv_bias) {
      m.map_rows(blk + "attn_q.bias", hf("self_attn.q_proj.bias"), c.n_heads);  // permuted like the weight rows
      m.map_rows(blk + "attn_k.bias", hf("self_attn.k_proj.bias"), c.n_kv_heads);
      m.map(blk + "attn_v.bias", hf("self_attn.v_proj.bias"));
    }
    if (c.qk_norm) {
      m.map(blk + "attn_q_norm.weight", hf("self_attn.q_norm.weight"));
      m.map(blk + "attn_k_norm.weight", hf("self_attn.k_norm.weight"));
    }
    m.map(blk + "ffn_norm.weight", hf("post_attention_layernorm.weight"));
    m.map(blk + "ffn_gate.weight", hf("mlp.gate_proj.weight"));
    m.map(blk + "ffn_up.weight", hf("mlp.up_proj.weight"));
    m.map(blk + "ffn_down.weight", hf("mlp.down_proj.weight"));
  }
  m.map("output_norm.weight", "model.norm.weight");
  if (!c.tied_embeddings) m.map("output.weight", "lm_head.weight");
  ModelWeights weights = m.take();
  check_decoder_weights(c, weights);
  return weights;
}

}  // namespace

LoadedModel load_gguf_model(const std::string& path) {
  const GgufFile file(path);
  LoadedModel model;
  model.format = ModelFormat::kGguf;
  model.path = path;
  model.files.push_back(path);
  model.config = parse_config(file);
  model.weights = read_weights(file, model.config);
  if (file.has("tokenizer.ggml.model")) model.tokenizer = load_gguf_tokenizer(file);
  return model;
}

}  // namespace oscar::model
