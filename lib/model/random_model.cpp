#include "model/random_model.h"

#include <cmath>
#include <random>

#include "core/error.h"

namespace oscar::model {
namespace {

/// Uniform in ±bound from the generator's top 24 bits: portable (std::uniform_real_distribution is not).
WeightTensor random_tensor(std::mt19937_64& generator, std::vector<std::int64_t> shape, float bound) {
  std::int64_t count = 1;
  for (std::int64_t extent : shape) count *= extent;
  std::vector<float> values(static_cast<std::size_t>(count));
  for (float& value : values) value = bound * (static_cast<float>(generator() >> 40) * 0x1.0p-23f - 1.0f);
  return WeightTensor::from_floats(std::move(values), std::move(shape));
}

WeightTensor ones(std::int64_t size) { return WeightTensor::from_floats(std::vector<float>(std::size_t(size), 1.0f), {size}); }

float fan_in_bound(std::int64_t fan_in) { return 0.5f / std::sqrt(static_cast<float>(fan_in)); }

}  // namespace

LoadedModel random_model(const ModelConfig& c, std::uint64_t seed) {
  validate_config(c, "random model");
  LoadedModel model;
  model.format = ModelFormat::kHuggingFace;
  model.path = "random:" + architecture_name(c.architecture);
  model.config = c;
  model.weights = ModelWeights(model.path);
  std::mt19937_64 generator(seed);
  const std::int64_t dim = c.dim, q = c.q_dim(), kv = c.kv_dim(), hid = c.hidden_dim, d = c.head_dim;
  ModelWeights& w = model.weights;
  w.add("model.embed_tokens.weight", random_tensor(generator, {c.vocab_size, dim}, 1.0f));
  if (!c.tied_embeddings) w.add("lm_head.weight", random_tensor(generator, {c.vocab_size, dim}, fan_in_bound(dim)));
  w.add("model.norm.weight", ones(dim));
  for (int i = 0; i < c.n_layers; ++i) {
    auto add = [&](const std::string& suffix, WeightTensor tensor) { w.add(layer_tensor_name(i, suffix), std::move(tensor)); };
    add("input_layernorm.weight", ones(dim));
    add("post_attention_layernorm.weight", ones(dim));
    add("self_attn.q_proj.weight", random_tensor(generator, {q, dim}, fan_in_bound(dim)));
    add("self_attn.k_proj.weight", random_tensor(generator, {kv, dim}, fan_in_bound(dim)));
    add("self_attn.v_proj.weight", random_tensor(generator, {kv, dim}, fan_in_bound(dim)));
    add("self_attn.o_proj.weight", random_tensor(generator, {dim, q}, fan_in_bound(q)));
    if (c.qkv_bias) {
      add("self_attn.q_proj.bias", random_tensor(generator, {q}, 0.1f));
      add("self_attn.k_proj.bias", random_tensor(generator, {kv}, 0.1f));
      add("self_attn.v_proj.bias", random_tensor(generator, {kv}, 0.1f));
    }
    if (c.qk_norm) {
      add("self_attn.q_norm.weight", ones(d));
      add("self_attn.k_norm.weight", ones(d));
    }
    add("mlp.gate_proj.weight", random_tensor(generator, {hid, dim}, fan_in_bound(dim)));
    add("mlp.up_proj.weight", random_tensor(generator, {hid, dim}, fan_in_bound(dim)));
    add("mlp.down_proj.weight", random_tensor(generator, {dim, hid}, fan_in_bound(hid)));
  }
  return model;
}

ModelConfig named_geometry(const std::string& name) {
  ModelConfig c;
  c.rope_style = RopeStyle::kNeox;
  c.rms_eps = 1e-6f;
  if (name == "qwen3-0.6b" || name == "qwen3-8b") {
    const bool small = name == "qwen3-0.6b";
    c.architecture = Architecture::kQwen3;
    c.dim = small ? 1024 : 4096;
    c.hidden_dim = small ? 3072 : 12288;
    c.n_layers = small ? 28 : 36;
    c.n_heads = small ? 16 : 32;
    c.n_kv_heads = 8;
    c.head_dim = 128;
    c.vocab_size = 151936;
    c.max_seq_len = 40960;
    c.rope_theta = 1e6;
    c.qk_norm = true;
    c.tied_embeddings = small;
  } else if (name == "llama-3.1-8b") {
    c.architecture = Architecture::kLlama;
    c.dim = 4096;
    c.hidden_dim = 14336;
    c.n_layers = 32;
    c.n_heads = 32;
    c.n_kv_heads = 8;
    c.head_dim = 128;
    c.vocab_size = 128256;
    c.max_seq_len = 131072;
    c.rope_theta = 5e5;
    c.rms_eps = 1e-5f;
    c.rope_scaling = {true, 8.0, 1.0, 4.0, 8192};
  } else {
    throw UsageError("unknown geometry '" + name + "' (qwen3-0.6b, qwen3-8b, llama-3.1-8b)");
  }
  return c;
}

}  // namespace oscar::model
