// Hugging Face directories: config.json for the geometry, model.safetensors (or a sharded index) for the
// weights, tokenizer.json for the vocabulary. Weights keep their Hugging Face names and stay memory-mapped.
#include <climits>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/hf_tokenizer.h"
#include "model/model_loader.h"
#include "model/safetensors_file.h"

namespace oscar::model {
void check_decoder_weights(const ModelConfig& c, const ModelWeights& w) {
  const std::int64_t dim = c.dim, hidden = c.hidden_dim, q = c.q_dim(), kv = c.kv_dim();
  w.at("model.embed_tokens.weight", {c.vocab_size, dim});
  for (int i = 0; i < c.n_layers; ++i) {
    w.at(layer_tensor_name(i, "input_layernorm.weight"), {dim});
    w.at(layer_tensor_name(i, "self_attn.q_proj.weight"), {q, dim});
    w.at(layer_tensor_name(i, "self_attn.k_proj.weight"), {kv, dim});
    w.at(layer_tensor_name(i, "self_attn.v_proj.weight"), {kv, dim});
    w.at(layer_tensor_name(i, "self_attn.o_proj.weight"), {dim, q});
    if (c.qkv_bias) {
      w.at(layer_tensor_name(i, "self_attn.q_proj.bias"), {q});
      w.at(layer_tensor_name(i, "self_attn.k_proj.bias"), {kv});
      w.at(layer_tensor_name(i, "self_attn.v_proj.bias"), {kv});
    }
    if (c.qk_norm) {
      w.at(layer_tensor_name(i, "self_attn.q_norm.weight"), {c.head_dim});
      w.at(layer_tensor_name(i, "self_attn.k_norm.weight"), {c.head_dim});
    }
    w.at(layer_tensor_name(i, "post_attention_layernorm.weight"), {dim});
    w.at(layer_tensor_name(i, "mlp.gate_proj.weight"), {hidden, dim});
    w.at(layer_tensor_name(i, "mlp.up_proj.weight"), {hidden, dim});
    w.at(layer_tensor_name(i, "mlp.down_proj.weight"), {dim, hidden});
  }
  w.at("model.norm.weight", {dim});
  if (!c.tied_embeddings) w.at("lm_head.weight", {c.vocab_size, dim});
}

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* const kEmbedding = "model.embed_tokens.weight";
const char* const kLmHead = "lm_head.weight";

[[noreturn]] void fail(const std::string& where, const std::string& problem) {
  throw InputError(where + ": " + problem);
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(path, "cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    fail(path, std::string("malformed JSON (") + e.what() + ")");
  }
}

/// Typed access to config.json's fields with messages naming the file and the field.
class ConfigReader {
 public:
  ConfigReader(std::string path, const json& root) : path_(std::move(path)), root_(root) {}

  bool present(const char* key) const { return root_.contains(key) && !root_.at(key).is_null(); }
  const json& at(const char* key) const {
    if (!present(key)) fail(path_, std::string("missing field ") + key);
    return root_.at(key);
  }
  int integer(const char* key) const { return to_int(key, at(key)); }
  int integer(const char* key, int fallback) const { return present(key) ? integer(key) : fallback; }
  double number(const char* key, double fallback) const {
    if (!present(key)) return fallback;
    if (!at(key).is_number()) fail(path_, std::string("field ") + key + " is not a number");
    return at(key).get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!present(key)) return fallback;
    if (!at(key).is_boolean()) fail(path_, std::string("field ") + key + " is not true/false");
    return at(key).get<bool>();
  }
  /// A token id that may be absent (-1), a number, or a list whose first entry counts (eos in Llama-3).
  int token_id(const char* key) const {
    if (!present(key)) return -1;
    const json& value = at(key);
    if (value.is_array()) return value.empty() ? -1 : to_int(key, value.front());
    return to_int(key, value);
  }
  int to_int(const char* key, const json& value) const {
    if (!value.is_number_integer()) fail(path_, std::string("field ") + key + " is not an integer");
    const auto v = value.get<std::int64_t>();
    if (v < INT_MIN || v > INT_MAX) fail(path_, std::string("field ") + key + " is out of range");
    return int(v);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const json& root_;
};

/// model_type first (it names the family), else the first entry of architectures.
Architecture parse_architecture(const ConfigReader& r) {
  std::string name;
  if (r.present("model_type") && r.at("model_type").is_string()) {
    name = r.at("model_type").get<std::string>();
  } else if (r.present("architectures") && r.at("architectures").is_array() && !r.at("architectures").empty() &&
             r.at("architectures").front().is_string()) {
    name = r.at("architectures").front().get<std::string>();
  } else {
    fail(r.path(), "neither model_type nor architectures names the architecture");
  }
  if (name == "llama" || name == "LlamaForCausalLM") return Architecture::kLlama;
  if (name == "qwen2" || name == "Qwen2ForCausalLM") return Architecture::kQwen2;
  if (name == "qwen3" || name == "Qwen3ForCausalLM") return Architecture::kQwen3;
  fail(r.path(), "unsupported architecture " + name + " (supported: llama, qwen2, qwen3)");
}

/// rope_scaling: null, absent or "default" mean none; "llama3" is Llama-3.1's scheme; anything else would
/// silently change the positions the model was trained with, so it is refused.
Llama3RopeScaling parse_rope_scaling(const ConfigReader& r) {
  Llama3RopeScaling scaling;
  if (!r.present("rope_scaling")) return scaling;
  const json& s = r.at("rope_scaling");
  if (!s.is_object()) fail(r.path(), "field rope_scaling is not an object");
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    if (s.contains(key) && s.at(key).is_string()) {
      type = s.at(key).get<std::string>();
      break;
    }
  }
  if (type == "default") return scaling;
  if (type != "llama3") fail(r.path(), "unsupported rope_scaling type " + (type.empty() ? "(none given)" : type));
  const ConfigReader fields(r.path(), s);
  scaling.enabled = true;
  scaling.factor = fields.number("factor", scaling.factor);
  scaling.low_freq_factor = fields.number("low_freq_factor", scaling.low_freq_factor);
  scaling.high_freq_factor = fields.number("high_freq_factor", scaling.high_freq_factor);
  scaling.original_max_position = fields.integer("original_max_position_embeddings", scaling.original_max_position);
  return scaling;
}

ModelConfig parse_config(const std::string& path, const json& root) {
  if (!root.is_object()) fail(path, "not a JSON object");
  const ConfigReader r(path, root);
  ModelConfig c;
  c.architecture = parse_architecture(r);
  c.dim = r.integer("hidden_size");
  c.hidden_dim = r.integer("intermediate_size");
  c.n_layers = r.integer("num_hidden_layers");
  c.n_heads = r.integer("num_attention_heads");
  c.n_kv_heads = r.integer("num_key_value_heads", c.n_heads);
  if (c.n_heads <= 0) fail(path, "num_attention_heads must be positive");
  c.head_dim = r.integer("head_dim", c.dim / c.n_heads);
  c.vocab_size = r.integer("vocab_size");
  c.max_seq_len = r.integer("max_position_embeddings");
  c.rms_eps = float(r.number("rms_norm_eps", 1e-6));
  c.rope_theta = r.number("rope_theta", 1e4);
  c.rope_style = RopeStyle::kNeox;  // Hugging Face's rotate_half
  c.rope_scaling = parse_rope_scaling(r);
  const bool attention_bias = r.boolean("attention_bias", false);
  // For Llama and Qwen3, attention_bias also puts a bias on o_proj, and mlp_bias on the MLP: the decoder has
  // neither (no released model of these families uses them), so refuse rather than compute a wrong forward.
  if (attention_bias && c.architecture != Architecture::kQwen2) fail(path, "attention_bias (o_proj bias) is not supported");
  if (r.boolean("mlp_bias", false)) fail(path, "mlp_bias is not supported");
  if (r.boolean("use_sliding_window", false)) fail(path, "use_sliding_window (sliding-window attention) is not supported");
  c.qkv_bias = c.architecture == Architecture::kQwen2;
  c.qk_norm = c.architecture == Architecture::kQwen3;
  c.tied_embeddings = r.boolean("tie_word_embeddings", false);
  c.bos_token = r.token_id("bos_token_id");
  c.eos_token = r.token_id("eos_token_id");
  validate_config(c, path);
  return c;
}

/// The tensors of a directory and the file that lists them (model.safetensors, or the index of the
/// shards): errors about a missing or misshapen tensor name that file.
struct HfWeights {
  std::string source;
  std::map<std::string, WeightTensor> tensors;
};

/// name -> tensor from model.safetensors or from the shards that model.safetensors.index.json lists.
HfWeights read_weights(const std::string& directory, std::vector<std::string>& files) {
  std::map<std::string, WeightTensor> tensors;
  const std::string single = directory + "/model.safetensors";
  const std::string index = directory + "/model.safetensors.index.json";
  if (fs::exists(single)) {
    const SafetensorsFile file(single);
    files.push_back(single);
    for (const std::string& name : file.names()) tensors[name] = file.tensor(name);
    return {single, std::move(tensors)};
  }
  if (!fs::exists(index)) fail(directory, "no model.safetensors or model.safetensors.index.json");
  const json root = read_json(index);
  files.push_back(index);
  if (!root.is_object() || !root.contains("weight_map") || !root.at("weight_map").is_object()) {
    fail(index, "no weight_map object");
  }
  std::map<std::string, std::unique_ptr<SafetensorsFile>> shards;  // each shard opened once
  for (const auto& [name, shard] : root.at("weight_map").items()) {
    if (!shard.is_string()) fail(index, "weight_map entry " + name + " is not a file name");
    const std::string shard_path = directory + "/" + shard.get<std::string>();
    auto& file = shards[shard_path];
    if (!file) {
      file = std::make_unique<SafetensorsFile>(shard_path);
      files.push_back(shard_path);
    }
    tensors[name] = file->tensor(name);
  }
  return {index, std::move(tensors)};
}

/// The embedding and the classifier under tied weights: some exports (TinyStories-656K) store only
/// lm_head.weight and alias the embedding to it in their metadata, so a missing embedding is taken from
/// lm_head; when the config ties them, lm_head is dropped so the decoder reads the one embedding.
ModelWeights assemble_weights(const ModelConfig& config, HfWeights read) {
  std::map<std::string, WeightTensor>& tensors = read.tensors;
  if (!tensors.count(kEmbedding) && tensors.count(kLmHead)) tensors[kEmbedding] = tensors.at(kLmHead);
  if (config.tied_embeddings) tensors.erase(kLmHead);
  ModelWeights weights(read.source);
  for (auto& [name, tensor] : tensors) weights.add(name, std::move(tensor));
  check_decoder_weights(config, weights);
  return weights;
}

}  // namespace

LoadedModel load_huggingface_model(const std::string& directory) {
  if (!fs::is_directory(directory)) fail(directory, "not a directory");
  LoadedModel model;
  model.format = ModelFormat::kHuggingFace;
  model.path = directory;
  const std::string config_path = directory + "/config.json";
  if (!fs::exists(config_path)) fail(config_path, "missing (not a Hugging Face model directory?)");
  model.config = parse_config(config_path, read_json(config_path));
  model.files.push_back(config_path);
  model.weights = assemble_weights(model.config, read_weights(directory, model.files));

  if (fs::exists(directory + "/tokenizer.json")) {
    model.tokenizer = load_hf_tokenizer(directory);
    model.files.push_back(directory + "/tokenizer.json");
    if (fs::exists(directory + "/tokenizer_config.json")) model.files.push_back(directory + "/tokenizer_config.json");
    // config.json usually names BOS/EOS; when it does not, the tokenizer's are the model's.
    if (model.config.bos_token < 0) model.config.bos_token = model.tokenizer->bos();
    if (model.config.eos_token < 0) model.config.eos_token = model.tokenizer->eos();
  }
  return model;
}

}  // namespace oscar::model
