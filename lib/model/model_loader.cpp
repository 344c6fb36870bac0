#include "model/model_loader.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "model/llama2c_file.h"
#include "model/llama2c_tokenizer.h"

namespace oscar::model {
namespace {

namespace fs = std::filesystem;

bool has_gguf_magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in && std::memcmp(magic, "GGUF", 4) == 0;
}

/// llama2.c stores every layer's matrix in one array; the decoder wants one tensor per layer.
void add_per_layer(ModelWeights& weights, const std::string& suffix, std::vector<float>& stacked, int layers,
                   std::vector<std::int64_t> shape) {
  const size_t per_layer = stacked.size() / static_cast<size_t>(layers);
  for (int i = 0; i < layers; ++i) {
    const auto first = stacked.begin() + static_cast<std::ptrdiff_t>(per_layer * static_cast<size_t>(i));
    weights.add(layer_tensor_name(i, suffix),
                WeightTensor::from_floats(std::vector<float>(first, first + static_cast<std::ptrdiff_t>(per_layer)), shape));
  }
  std::vector<float>().swap(stacked);  // free as we go: the model is held once, not twice
}

std::string default_llama2c_tokenizer(const std::string& model_path, int vocab_size) {
  const fs::path dir = fs::path(model_path).parent_path();
  for (const fs::path& candidate : {dir / "tokenizer.bin", dir / ("tok" + std::to_string(vocab_size) + ".bin")}) {
    if (fs::exists(candidate)) return candidate.string();
  }
  return "";
}

}  // namespace

std::string model_format_name(ModelFormat format) {
  switch (format) {
    case ModelFormat::kLlama2c: return "llama2c";
    case ModelFormat::kGguf: return "gguf";
    case ModelFormat::kHuggingFace: return "huggingface";
  }
  return "?";
}

LoadedModel load_llama2c_model(const std::string& path, const std::string& tokenizer_path) {
  Llama2cModel file = load_llama2c(path);
  LoadedModel model;
  model.format = ModelFormat::kLlama2c;
  model.path = path;
  model.config = file.config;
  model.weights = ModelWeights(path);
  model.files.push_back(path);
  const ModelConfig& c = model.config;
  Llama2cWeights& w = file.weights;
  const std::int64_t dim = c.dim, kv = c.kv_dim(), hid = c.hidden_dim, L = c.n_layers;
  model.weights.add("model.embed_tokens.weight", WeightTensor::from_floats(std::move(w.token_embedding), {c.vocab_size, dim}));
  model.weights.add("model.norm.weight", WeightTensor::from_floats(std::move(w.rms_final), {dim}));
  if (!c.tied_embeddings) model.weights.add("lm_head.weight", WeightTensor::from_floats(std::move(w.classifier), {c.vocab_size, dim}));
  add_per_layer(model.weights, "input_layernorm.weight", w.rms_att, int(L), {dim});
  add_per_layer(model.weights, "self_attn.q_proj.weight", w.wq, int(L), {dim, dim});
  add_per_layer(model.weights, "self_attn.k_proj.weight", w.wk, int(L), {kv, dim});
  add_per_layer(model.weights, "self_attn.v_proj.weight", w.wv, int(L), {kv, dim});
  add_per_layer(model.weights, "self_attn.o_proj.weight", w.wo, int(L), {dim, dim});
  add_per_layer(model.weights, "post_attention_layernorm.weight", w.rms_ffn, int(L), {dim});
  add_per_layer(model.weights, "mlp.gate_proj.weight", w.w1, int(L), {hid, dim});
  add_per_layer(model.weights, "mlp.down_proj.weight", w.w2, int(L), {dim, hid});
  add_per_layer(model.weights, "mlp.up_proj.weight", w.w3, int(L), {hid, dim});

  const std::string tokenizer = tokenizer_path.empty() ? default_llama2c_tokenizer(path, c.vocab_size) : tokenizer_path;
  if (!tokenizer.empty()) {
    model.tokenizer = std::make_unique<Llama2cTokenizer>(tokenizer, c.vocab_size);
    model.files.push_back(tokenizer);
  }
  return model;
}

nlohmann::json describe_model(const LoadedModel& model) {
  const ModelConfig& c = model.config;
  nlohmann::json weight_dtypes = nlohmann::json::object();
  std::int64_t parameters = 0;
  for (const auto& [name, tensor] : model.weights.tensors()) {
    const std::string dtype = dtype_name(tensor.dtype);
    weight_dtypes[dtype] = weight_dtypes.value(dtype, 0) + 1;
    parameters += tensor.numel();
  }
  nlohmann::json tokenizer = nullptr;
  if (model.tokenizer) {
    const Tokenizer& t = *model.tokenizer;
    tokenizer = {{"kind", t.kind()}, {"vocab_size", t.vocab_size()}, {"bos", t.bos()}, {"eos", t.eos()}, {"adds_bos", t.adds_bos()}};
  }
  return {{"path", model.path},
          {"format", model_format_name(model.format)},
          {"architecture", architecture_name(c.architecture)},
          {"dim", c.dim},
          {"hidden_dim", c.hidden_dim},
          {"num_layers", c.n_layers},
          {"num_q_heads", c.n_heads},
          {"num_kv_heads", c.n_kv_heads},
          {"head_dim", c.head_dim},
          {"vocab_size", c.vocab_size},
          {"max_seq_len", c.max_seq_len},
          {"rms_eps", c.rms_eps},
          {"rope_theta", c.rope_theta},
          {"rope_style", rope_style_name(c.rope_style)},
          {"llama3_rope_scaling", c.rope_scaling.enabled},
          {"qkv_bias", c.qkv_bias},
          {"qk_norm", c.qk_norm},
          {"tied_embeddings", c.tied_embeddings},
          {"weight_dtypes", weight_dtypes},
          {"parameters", parameters},
          {"tokenizer", tokenizer}};
}

LoadedModel load_model(const std::string& path, const std::string& tokenizer_path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return load_huggingface_model(path);
  if (!fs::exists(path, ec)) throw InputError(path + ": no such file or directory");
  if (has_gguf_magic(path)) return load_gguf_model(path);
  return load_llama2c_model(path, tokenizer_path);
}

}  // namespace oscar::model
