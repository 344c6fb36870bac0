// Model file readers (GGUF, safetensors) and the GGUF / Hugging Face loaders, checked against the real
// TinyStories-656K files documented in ../shared/data/SOURCES.md (the same model as fp32 safetensors and as a
// Q8_0 GGUF with llama.cpp's Q/K row permutation) and against small files written here byte by byte.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <sstream>
#include <tuple>

#include "core/dtype.h"
#include "core/error.h"
#include "model/gguf_file.h"
#include "model/model_loader.h"
#include "model/safetensors_file.h"

using namespace oscar;
using namespace oscar::model;
namespace fs = std::filesystem;

namespace {

const std::string kModelDir = std::string(OSCAR_SHARED_DATA) + "/models/tinystories-656k";
const std::string kGgufPath = kModelDir + "/TinyStories-656K-Q8_0.gguf";
const std::string kSafetensorsPath = kModelDir + "/model.safetensors";

// ---------------------------------------------------------------------------------------------------------
// Files on disk.

/// A fresh directory under the system temp dir, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::random_device seed;
    path_ = fs::temp_directory_path() / ("oscar_model_files_" + std::to_string(seed()) + std::to_string(seed()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string str() const { return path_.string(); }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

using Bytes = std::vector<unsigned char>;

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

template <typename T>
void append(Bytes& out, T value) {
  unsigned char raw[sizeof(T)];
  std::memcpy(raw, &value, sizeof(T));
  out.insert(out.end(), raw, raw + sizeof(T));
}

/// Runs `action`, expecting InputError whose message contains every one of `parts`; returns the message.
template <typename Action>
std::string expect_input_error(Action action, const std::vector<std::string>& parts) {
  try {
    action();
  } catch (const InputError& e) {
    const std::string message = e.what();
    for (const std::string& part : parts) EXPECT_NE(message.find(part), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one-line message: " << message;
    return message;
  }
  ADD_FAILURE() << "no InputError";
  return "";
}

/// Deterministic values in [-1, 1).
std::vector<float> pseudo_random(std::size_t n, std::uint32_t seed) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> values(n);
  for (float& v : values) v = uniform(generator);
  return values;
}

std::int64_t product(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (std::int64_t e : shape) n *= e;
  return n;
}

// ---------------------------------------------------------------------------------------------------------
// A safetensors writer, straight from the format: u64 header length, JSON header, data.

struct TensorSpec {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> values;
  std::string dtype = "F32";
};

std::string json_shape(const std::vector<std::int64_t>& shape) {
  std::string text = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) text += (i ? "," : "") + std::to_string(shape[i]);
  return text + "]";
}

Bytes encode_values(const TensorSpec& t) {
  Bytes data;
  for (float v : t.values) {
    if (t.dtype == "F32") append(data, v);
    if (t.dtype == "F16") append(data, float_to_float16(v));
    if (t.dtype == "BF16") append(data, float_to_bfloat16(v));
  }
  return data;
}

/// `header_padding` spaces end the JSON (the Python writer pads to 8 bytes; 0 leaves data misaligned).
void write_safetensors(const std::string& path, const std::vector<TensorSpec>& tensors, std::size_t header_padding = 0) {
  Bytes data;
  std::string header = "{\"__metadata__\":{\"format\":\"pt\"}";
  for (const TensorSpec& t : tensors) {
    const Bytes encoded = encode_values(t);
    header += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":" + json_shape(t.shape) +
              ",\"data_offsets\":[" + std::to_string(data.size()) + "," + std::to_string(data.size() + encoded.size()) + "]}";
    data.insert(data.end(), encoded.begin(), encoded.end());
  }
  header += "}" + std::string(header_padding, ' ');
  Bytes file;
  append(file, std::uint64_t(header.size()));
  file.insert(file.end(), header.begin(), header.end());
  file.insert(file.end(), data.begin(), data.end());
  write_bytes(path, file);
}

/// A safetensors file with one F32 tensor whose header is given verbatim and `data_bytes` zero bytes of data.
void write_raw_safetensors(const std::string& path, const std::string& header, std::size_t data_bytes) {
  Bytes file;
  append(file, std::uint64_t(header.size()));
  file.insert(file.end(), header.begin(), header.end());
  file.resize(file.size() + data_bytes, 0);
  write_bytes(path, file);
}

// ---------------------------------------------------------------------------------------------------------
// A GGUF writer, straight from the format (v3 layout; llama.cpp's gguf.cpp / gguf-py).

constexpr std::uint32_t kTypeUInt32 = 4, kTypeInt32 = 5, kTypeFloat32 = 6, kTypeBool = 7, kTypeString = 8,
                        kTypeArray = 9, kTypeUInt64 = 10;

class GgufWriter {
 public:
  void u32(const std::string& key, std::uint32_t v) { scalar(key, kTypeUInt32, v); }
  void i32(const std::string& key, std::int32_t v) { scalar(key, kTypeInt32, v); }
  void f32(const std::string& key, float v) { scalar(key, kTypeFloat32, v); }
  void boolean(const std::string& key, bool v) { scalar(key, kTypeBool, std::uint8_t(v)); }
  void string(const std::string& key, const std::string& v) {
    start(key, kTypeString);
    put_string(metadata_, v);
  }
  void string_array(const std::string& key, const std::vector<std::string>& values) {
    start(key, kTypeArray);
    append(metadata_, kTypeString);
    append(metadata_, std::uint64_t(values.size()));
    for (const std::string& v : values) put_string(metadata_, v);
  }
  /// An array claiming `count` uint32 elements that are not there.
  void lying_array(const std::string& key, std::uint64_t count) {
    start(key, kTypeArray);
    append(metadata_, kTypeUInt32);
    append(metadata_, count);
  }
  /// An array of two arrays of int32 (exercises skipping nested arrays).
  void nested_array(const std::string& key) {
    start(key, kTypeArray);
    append(metadata_, kTypeArray);
    append(metadata_, std::uint64_t(2));
    for (int i = 0; i < 2; ++i) {
      append(metadata_, kTypeInt32);
      append(metadata_, std::uint64_t(3));
      for (int j = 0; j < 3; ++j) append(metadata_, std::int32_t(j));
    }
  }
  /// `shape` outermost first; `data` already encoded in ggml type `type`.
  void tensor(const std::string& name, const std::vector<std::int64_t>& shape, std::uint32_t type, const Bytes& data) {
    tensors_.push_back({name, shape, type, data});
  }
  void tensor_f32(const std::string& name, const std::vector<std::int64_t>& shape, const std::vector<float>& values) {
    Bytes data;
    for (float v : values) append(data, v);
    tensor(name, shape, 0, data);
  }

  Bytes bytes(std::uint32_t version = 3, std::uint64_t alignment = 32) const {
    Bytes out{'G', 'G', 'U', 'F'};
    append(out, version);
    append(out, std::uint64_t(tensors_.size()));
    append(out, count_);
    out.insert(out.end(), metadata_.begin(), metadata_.end());
    std::uint64_t offset = 0;
    for (const Tensor& t : tensors_) {
      put_string(out, t.name);
      append(out, std::uint32_t(t.shape.size()));
      for (auto e = t.shape.rbegin(); e != t.shape.rend(); ++e) append(out, std::uint64_t(*e));  // innermost first
      append(out, t.type);
      append(out, offset);
      offset = (offset + t.data.size() + alignment - 1) / alignment * alignment;
    }
    for (const Tensor& t : tensors_) {
      out.resize((out.size() + alignment - 1) / alignment * alignment, 0);
      out.insert(out.end(), t.data.begin(), t.data.end());
    }
    return out;
  }
  void write(const std::string& path, std::uint32_t version = 3) const { write_bytes(path, bytes(version)); }

 private:
  struct Tensor {
    std::string name;
    std::vector<std::int64_t> shape;
    std::uint32_t type;
    Bytes data;
  };
  static void put_string(Bytes& out, const std::string& s) {
    append(out, std::uint64_t(s.size()));
    out.insert(out.end(), s.begin(), s.end());
  }
  void start(const std::string& key, std::uint32_t type) {
    put_string(metadata_, key);
    append(metadata_, type);
    ++count_;
  }
  template <typename T>
  void scalar(const std::string& key, std::uint32_t type, T v) {
    start(key, type);
    append(metadata_, v);
  }

  Bytes metadata_;
  std::uint64_t count_ = 0;
  std::vector<Tensor> tensors_;
};

// ---------------------------------------------------------------------------------------------------------
// Model geometry for the synthetic models.

struct TinyModel {
  std::string arch = "llama";  // llama | qwen2 | qwen3 (GGUF and config.json spell them alike)
  int dim = 64, hidden = 96, layers = 2, heads = 4, kv_heads = 2, head_dim = 16, vocab = 40;
  bool bias = false, qk_norm = false, tied = false;
  std::string eos_json = "4";  // config.json's eos_token_id, verbatim

  int q_dim() const { return heads * head_dim; }
  int kv_dim() const { return kv_heads * head_dim; }
};

/// Every tensor of `m` under Hugging Face names with deterministic values.
std::vector<TensorSpec> hf_tensors(const TinyModel& m) {
  std::vector<TensorSpec> tensors;
  std::uint32_t seed = 1;
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape) {
    tensors.push_back({name, shape, pseudo_random(std::size_t(product(shape)), seed++)});
  };
  add("model.embed_tokens.weight", {m.vocab, m.dim});
  for (int i = 0; i < m.layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {m.dim});
    add(p + "self_attn.q_proj.weight", {m.q_dim(), m.dim});
    add(p + "self_attn.k_proj.weight", {m.kv_dim(), m.dim});
    add(p + "self_attn.v_proj.weight", {m.kv_dim(), m.dim});
    add(p + "self_attn.o_proj.weight", {m.dim, m.q_dim()});
    if (m.bias) {
      add(p + "self_attn.q_proj.bias", {m.q_dim()});
      add(p + "self_attn.k_proj.bias", {m.kv_dim()});
      add(p + "self_attn.v_proj.bias", {m.kv_dim()});
    }
    if (m.qk_norm) {
      add(p + "self_attn.q_norm.weight", {m.head_dim});
      add(p + "self_attn.k_norm.weight", {m.head_dim});
    }
    add(p + "post_attention_layernorm.weight", {m.dim});
    add(p + "mlp.gate_proj.weight", {m.hidden, m.dim});
    add(p + "mlp.up_proj.weight", {m.hidden, m.dim});
    add(p + "mlp.down_proj.weight", {m.dim, m.hidden});
  }
  add("model.norm.weight", {m.dim});
  if (!m.tied) add("lm_head.weight", {m.vocab, m.dim});
  return tensors;
}

std::string config_json(const TinyModel& m, const std::string& extra = "") {
  std::ostringstream s;
  s << "{\"model_type\": \"" << m.arch << "\", \"hidden_size\": " << m.dim << ", \"intermediate_size\": " << m.hidden
    << ", \"num_hidden_layers\": " << m.layers << ", \"num_attention_heads\": " << m.heads
    << ", \"num_key_value_heads\": " << m.kv_heads << ", \"head_dim\": " << m.head_dim
    << ", \"vocab_size\": " << m.vocab << ", \"max_position_embeddings\": 128, \"rms_norm_eps\": 1e-06"
    << ", \"rope_theta\": 1000000.0, \"tie_word_embeddings\": " << (m.tied ? "true" : "false")
    << ", \"bos_token_id\": 3, \"eos_token_id\": " << m.eos_json << extra << "}";
  return s.str();
}

/// config.json + model.safetensors, leaving out tensor `omit`.
void write_hf_directory(const std::string& dir, const TinyModel& m, const std::string& omit = "",
                        const std::string& extra_config = "") {
  std::vector<TensorSpec> tensors = hf_tensors(m);
  tensors.erase(std::remove_if(tensors.begin(), tensors.end(), [&](const TensorSpec& t) { return t.name == omit; }),
                tensors.end());
  write_safetensors(dir + "/model.safetensors", tensors, 3);  // 3 spaces: data left misaligned on purpose
  write_text(dir + "/config.json", config_json(m, extra_config));
}

/// The rows of a [rows, in] matrix as llama.cpp's converter stores Q/K for interleaved RoPE, written as the
/// numpy it is documented as: w.reshape(heads, 2, rows/heads/2, in).swapaxes(1, 2).reshape(rows, in).
std::vector<float> llama_cpp_permute(const std::vector<float>& w, int heads, std::int64_t rows, std::int64_t in) {
  const std::int64_t half = rows / heads / 2;
  std::vector<float> out(w.size());
  // Source viewed as [heads][2][half][in]; destination as [heads][half][2][in].
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t a = 0; a < 2; ++a)
      for (std::int64_t b = 0; b < half; ++b)
        for (std::int64_t c = 0; c < in; ++c)
          out[((h * half + b) * 2 + a) * in + c] = w[((h * 2 + a) * half + b) * in + c];
  return out;
}

/// A GGUF model of geometry `m`: F32 tensors under llama.cpp names, with Q/K permuted for llama like the
/// converter does. Returns the HF-layout tensors it was built from.
std::vector<TensorSpec> write_gguf_model(const std::string& path, const TinyModel& m,
                                         const std::function<void(GgufWriter&)>& extra = {}) {
  const std::vector<TensorSpec> hf = hf_tensors(m);
  GgufWriter w;
  w.string("general.architecture", m.arch);
  w.u32(m.arch + ".embedding_length", std::uint32_t(m.dim));
  w.u32(m.arch + ".feed_forward_length", std::uint32_t(m.hidden));
  w.u32(m.arch + ".block_count", std::uint32_t(m.layers));
  w.u32(m.arch + ".attention.head_count", std::uint32_t(m.heads));
  w.u32(m.arch + ".attention.head_count_kv", std::uint32_t(m.kv_heads));
  w.u32(m.arch + ".attention.key_length", std::uint32_t(m.head_dim));
  w.u32(m.arch + ".context_length", 256);
  w.f32(m.arch + ".attention.layer_norm_rms_epsilon", 1e-6f);
  w.f32(m.arch + ".rope.freq_base", 1e6f);
  w.u32("tokenizer.ggml.bos_token_id", 3);
  w.u32("tokenizer.ggml.eos_token_id", 4);
  if (extra) extra(w);
  const std::vector<std::pair<std::string, std::string>> names = {
      {"model.embed_tokens.weight", "token_embd.weight"},
      {"input_layernorm.weight", "attn_norm.weight"},
      {"self_attn.q_proj.weight", "attn_q.weight"},
      {"self_attn.k_proj.weight", "attn_k.weight"},
      {"self_attn.v_proj.weight", "attn_v.weight"},
      {"self_attn.o_proj.weight", "attn_output.weight"},
      {"self_attn.q_proj.bias", "attn_q.bias"},
      {"self_attn.k_proj.bias", "attn_k.bias"},
      {"self_attn.v_proj.bias", "attn_v.bias"},
      {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},
      {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.weight", "ffn_gate.weight"},
      {"mlp.up_proj.weight", "ffn_up.weight"},
      {"mlp.down_proj.weight", "ffn_down.weight"},
      {"model.norm.weight", "output_norm.weight"},
      {"lm_head.weight", "output.weight"}};
  for (const TensorSpec& t : hf) {
    std::string gguf_name;
    for (const auto& [hf_suffix, gguf_suffix] : names) {
      const std::string layer_prefix = "model.layers.";
      if (t.name == hf_suffix) gguf_name = gguf_suffix;
      if (t.name.rfind(layer_prefix, 0) == 0 && t.name.size() > hf_suffix.size() &&
          t.name.compare(t.name.size() - hf_suffix.size(), hf_suffix.size(), hf_suffix) == 0 &&
          t.name[t.name.size() - hf_suffix.size() - 1] == '.') {
        const std::string layer = t.name.substr(layer_prefix.size(), t.name.find('.', layer_prefix.size()) - layer_prefix.size());
        gguf_name = "blk." + layer + "." + gguf_suffix;
      }
    }
    std::vector<float> values = t.values;
    const bool is_q = gguf_name.find("attn_q.") != std::string::npos, is_k = gguf_name.find("attn_k.") != std::string::npos;
    if (m.arch == "llama" && (is_q || is_k)) {
      const std::int64_t in = t.shape.size() == 2 ? t.shape[1] : 1;
      values = llama_cpp_permute(values, is_q ? m.heads : m.kv_heads, t.shape[0], in);
    }
    w.tensor_f32(gguf_name, t.shape, values);
  }
  w.write(path);
  return hf;
}

/// How many 32-element blocks of `dequantized` break Q8_0's error bound against `reference`. Q8_0 stores
/// d = fp16(max|block| / 127) and q = round(x / d), so |x - d q| <= d / 2 plus the fp16 rounding of d
/// (relative 2^-11, times |q| <= 127).
std::size_t q8_blocks_out_of_bound(const std::vector<float>& dequantized, const std::vector<float>& reference) {
  EXPECT_EQ(dequantized.size(), reference.size());
  EXPECT_EQ(reference.size() % 32, 0u);
  std::size_t bad = 0;
  for (std::size_t block = 0; block + 32 <= reference.size(); block += 32) {
    float amax = 0;
    for (std::size_t i = block; i < block + 32; ++i) amax = std::max(amax, std::fabs(reference[i]));
    const float bound = amax / 127 / 2 + amax / 2048 + 1e-7f;
    for (std::size_t i = block; i < block + 32; ++i) {
      if (std::fabs(dequantized[i] - reference[i]) > bound) {
        ++bad;
        break;
      }
    }
  }
  return bad;
}

/// TinyStories-656K's geometry as its config.json states it; both of its files must load to this.
void expect_tinystories_656k_config(const ModelConfig& c) {
  EXPECT_EQ(c.architecture, Architecture::kLlama);
  EXPECT_EQ(c.dim, 128);
  EXPECT_EQ(c.hidden_dim, 384);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.vocab_size, 2048);
  EXPECT_EQ(c.max_seq_len, 512);
  EXPECT_FLOAT_EQ(c.rms_eps, 1e-6f);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.rope_style, RopeStyle::kNeox);
  EXPECT_FALSE(c.rope_scaling.enabled);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.qk_norm);
  EXPECT_TRUE(c.tied_embeddings);
  EXPECT_EQ(c.bos_token, 1);
  EXPECT_EQ(c.eos_token, 2);
}

}  // namespace

// =========================================================================================================
// GgufFile on the real TinyStories-656K Q8_0 file.

TEST(GgufFileModelFiles, ReadsHeaderAndMetadataOfTinyStories) {
  const GgufFile file(kGgufPath);
  EXPECT_EQ(file.version(), 3);
  EXPECT_EQ(file.path(), kGgufPath);
  EXPECT_EQ(file.get_string("general.architecture"), "llama");
  EXPECT_EQ(file.get_string("general.name"), "Raincandy U TinyStories 656K");
  EXPECT_EQ(file.get_int("llama.block_count"), 2);
  EXPECT_EQ(file.get_int("llama.embedding_length"), 128);
  EXPECT_EQ(file.get_int("llama.feed_forward_length"), 384);
  EXPECT_EQ(file.get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(file.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(file.get_int("llama.context_length"), 512);
  EXPECT_EQ(file.get_int("llama.vocab_size"), 2048);
  EXPECT_EQ(file.get_int("general.file_type"), 7);  // LLAMA_FTYPE_MOSTLY_Q8_0
  EXPECT_DOUBLE_EQ(file.get_float("llama.rope.freq_base"), 10000.0);
  EXPECT_NEAR(file.get_float("llama.attention.layer_norm_rms_epsilon"), 1e-6, 1e-12);
  EXPECT_TRUE(file.get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_FALSE(file.get_bool("tokenizer.ggml.add_eos_token"));
  EXPECT_EQ(file.get_int("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(file.get_int("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_EQ(file.get_string_array("general.languages"), std::vector<std::string>{"en"});

  const std::vector<std::string> tokens = file.get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 2048u);
  EXPECT_EQ(tokens[0], "<unk>");
  EXPECT_EQ(tokens[1], "<|start_story|>");
  EXPECT_EQ(tokens[2], "<|end_story|>");
  EXPECT_EQ(file.get_float_array("tokenizer.ggml.scores").size(), 2048u);
  EXPECT_FLOAT_EQ(file.get_float_array("tokenizer.ggml.scores")[0], -1000.0f);
  const std::vector<std::int64_t> types = file.get_int_array("tokenizer.ggml.token_type");
  ASSERT_EQ(types.size(), 2048u);
  EXPECT_EQ((std::vector<std::int64_t>(types.begin(), types.begin() + 5)), (std::vector<std::int64_t>{3, 3, 3, 1, 1}));

  EXPECT_EQ(file.keys().size(), 34u);
  EXPECT_TRUE(file.has("tokenizer.ggml.model"));
  EXPECT_FALSE(file.has("llama.rope.scaling.type"));
  EXPECT_EQ(file.get_int("llama.rope.scaling.original_context_length", 77), 77);
  EXPECT_EQ(file.get_string("general.architecture", "x"), "llama");
}

TEST(GgufFileModelFiles, MetadataGettersRejectMissingKeysAndWrongTypes) {
  const GgufFile file(kGgufPath);
  expect_input_error([&] { file.get_int("llama.no_such_key"); }, {kGgufPath + ": ", "missing metadata llama.no_such_key"});
  expect_input_error([&] { file.get_string("llama.block_count"); }, {kGgufPath, "llama.block_count", "string"});
  expect_input_error([&] { file.get_int("general.architecture"); }, {kGgufPath, "general.architecture"});
  expect_input_error([&] { file.get_string_array("tokenizer.ggml.scores"); }, {kGgufPath, "tokenizer.ggml.scores"});
  expect_input_error([&] { file.get_int_array("tokenizer.ggml.tokens"); }, {kGgufPath, "tokenizer.ggml.tokens"});
}

TEST(GgufFileModelFiles, TensorDirectoryOfTinyStories) {
  const GgufFile file(kGgufPath);
  EXPECT_EQ(file.tensors().size(), 20u);  // 2 + 9 per layer; no output.weight (tied)
  EXPECT_EQ(file.find_tensor("output.weight"), nullptr);
  const GgufTensorInfo* embedding = file.find_tensor("token_embd.weight");
  ASSERT_NE(embedding, nullptr);
  EXPECT_EQ(embedding->shape, (std::vector<std::int64_t>{2048, 128}));
  EXPECT_EQ(embedding->type, std::uint32_t(GgmlType::kQ8_0));
  const std::vector<std::pair<std::string, std::vector<std::int64_t>>> matrices = {
      {"attn_q.weight", {128, 128}}, {"attn_k.weight", {64, 128}},   {"attn_v.weight", {64, 128}},
      {"attn_output.weight", {128, 128}}, {"ffn_gate.weight", {384, 128}}, {"ffn_up.weight", {384, 128}},
      {"ffn_down.weight", {128, 384}}};
  for (int layer = 0; layer < 2; ++layer) {
    const std::string blk = "blk." + std::to_string(layer) + ".";
    for (const auto& [name, shape] : matrices) {
      const GgufTensorInfo* t = file.find_tensor(blk + name);
      ASSERT_NE(t, nullptr) << blk + name;
      EXPECT_EQ(t->shape, shape) << blk + name;
      EXPECT_EQ(ggml_type_name(t->type), "Q8_0") << blk + name;
      EXPECT_EQ(t->numel(), shape[0] * shape[1]);
    }
    for (const char* norm : {"attn_norm.weight", "ffn_norm.weight"}) {
      const GgufTensorInfo* t = file.find_tensor(blk + norm);
      ASSERT_NE(t, nullptr);
      EXPECT_EQ(t->shape, std::vector<std::int64_t>{128});
      EXPECT_EQ(ggml_type_name(t->type), "F32");
    }
  }
  // Offsets from the file's tensor directory (independently dumped with a Python reader of the spec).
  EXPECT_EQ(file.find_tensor("output_norm.weight")->offset, 0u);
  EXPECT_EQ(file.find_tensor("token_embd.weight")->offset, 512u);
  EXPECT_EQ(file.find_tensor("blk.1.ffn_up.weight")->offset, 646656u);
}

TEST(GgufFileModelFiles, TypeNames) {
  EXPECT_EQ(ggml_type_name(0), "F32");
  EXPECT_EQ(ggml_type_name(1), "F16");
  EXPECT_EQ(ggml_type_name(8), "Q8_0");
  EXPECT_EQ(ggml_type_name(12), "Q4_K");
  EXPECT_EQ(ggml_type_name(14), "Q6_K");
  EXPECT_EQ(ggml_type_name(30), "BF16");
  EXPECT_EQ(ggml_type_name(999), "type 999");
}

// The strongest check of the GGUF path: the fp32 safetensors weights are the originals the Q8_0 file was
// quantised from, so each raw GGUF tensor must match them within Q8_0's bound once Q/K rows are permuted the
// way llama.cpp's converter documents; unpermuted, Q and K must not match (the permutation is real).
TEST(GgufFileModelFiles, RawQ8TensorsMatchSafetensorsUnderLlamaCppPermutation) {
  const GgufFile gguf(kGgufPath);
  const SafetensorsFile st(kSafetensorsPath);
  for (int layer = 0; layer < 2; ++layer) {
    const std::string blk = "blk." + std::to_string(layer) + ".";
    const std::string hf = "model.layers." + std::to_string(layer) + ".self_attn.";
    for (const auto& [gguf_name, hf_name, heads] : std::vector<std::tuple<std::string, std::string, int>>{
             {"attn_q.weight", "q_proj.weight", 8}, {"attn_k.weight", "k_proj.weight", 4}}) {
      const std::vector<float> raw = gguf.dequantize(*gguf.find_tensor(blk + gguf_name));
      const WeightTensor reference = st.tensor(hf + hf_name);
      const std::vector<float> original = reference.to_floats();
      const std::vector<float> permuted = llama_cpp_permute(original, heads, reference.shape[0], reference.shape[1]);
      EXPECT_EQ(q8_blocks_out_of_bound(raw, permuted), 0u) << blk + gguf_name;
      EXPECT_GT(q8_blocks_out_of_bound(raw, original), raw.size() / 32 / 2) << blk + gguf_name << " is not permuted";
    }
    // V is stored as is.
    const std::vector<float> v = gguf.dequantize(*gguf.find_tensor(blk + "attn_v.weight"));
    EXPECT_EQ(q8_blocks_out_of_bound(v, st.tensor(hf + "v_proj.weight").to_floats()), 0u);
  }
}

// =========================================================================================================
// GgufFile on synthetic files.

TEST(GgufFileModelFiles, DequantizesF32F16BF16AndQ8_0Exactly) {
  TempDir dir;
  GgufWriter w;
  w.string("general.architecture", "test");
  w.nested_array("test.nested");  // skipped safely, the rest still parses
  w.u32("test.after_nested", 7);
  const std::vector<float> values = {1.0f, -2.5f, 0.15625f, 65504.0f, -0.0009765625f, 3.0f};
  Bytes f32, f16, bf16;
  for (float v : values) {
    append(f32, v);
    append(f16, float_to_float16(v));  // every value is exact in fp16
    append(bf16, float_to_bfloat16(v));
  }
  w.tensor("f32", {2, 3}, 0, f32);
  w.tensor("f16", {3, 2}, 1, f16);
  w.tensor("bf16", {6}, 30, bf16);
  // Two Q8_0 blocks: scale 0.5 (fp16 0x3800) with q = -16..15, scale -0.25 (0xb400) with q = 100..131 (wraps).
  Bytes q8;
  std::vector<float> q8_expected;
  append(q8, std::uint16_t(0x3800));
  for (int q = -16; q < 16; ++q) {
    append(q8, std::int8_t(q));
    q8_expected.push_back(0.5f * float(q));
  }
  append(q8, std::uint16_t(0xb400));
  for (int i = 0; i < 32; ++i) {
    const auto q = std::int8_t(std::uint8_t(100 + i));
    append(q8, q);
    q8_expected.push_back(-0.25f * float(q));
  }
  w.tensor("q8", {2, 32}, 8, q8);
  w.write(dir.file("types.gguf"));

  const GgufFile file(dir.file("types.gguf"));
  EXPECT_EQ(file.get_int("test.after_nested"), 7);
  EXPECT_EQ(file.dequantize(*file.find_tensor("f32")), values);
  EXPECT_EQ(file.dequantize(*file.find_tensor("f16")), values);
  const std::vector<float> from_bf16 = file.dequantize(*file.find_tensor("bf16"));
  for (std::size_t i = 0; i < values.size(); ++i) EXPECT_EQ(from_bf16[i], bfloat16_to_float(float_to_bfloat16(values[i])));
  EXPECT_EQ(file.dequantize(*file.find_tensor("q8")), q8_expected);
  EXPECT_EQ(file.find_tensor("q8")->shape, (std::vector<std::int64_t>{2, 32}));
}

TEST(GgufFileModelFiles, ReadsVersion2AndCustomAlignment) {
  TempDir dir;
  GgufWriter w;
  w.u32("general.alignment", 64);
  w.tensor_f32("a", {3}, {1, 2, 3});
  w.tensor_f32("b", {2}, {4, 5});
  write_bytes(dir.file("v2.gguf"), w.bytes(2, 64));
  const GgufFile file(dir.file("v2.gguf"));
  EXPECT_EQ(file.version(), 2);
  EXPECT_EQ(file.find_tensor("b")->offset, 64u);
  EXPECT_EQ(file.dequantize(*file.find_tensor("b")), (std::vector<float>{4, 5}));
}

TEST(GgufFileModelFiles, UnsupportedTypeIsNamedOnDequantize) {
  TempDir dir;
  GgufWriter w;
  w.tensor("blk.0.attn_q.weight", {256}, 12, Bytes(144, 0));  // one Q4_K super-block
  w.write(dir.file("q4k.gguf"));
  const GgufFile file(dir.file("q4k.gguf"));
  expect_input_error([&] { file.dequantize(*file.find_tensor("blk.0.attn_q.weight")); },
                     {dir.file("q4k.gguf") + ": tensor blk.0.attn_q.weight has type Q4_K; supported: F32, F16, BF16, Q8_0"});
}

TEST(GgufFileModelFiles, RejectsMissingFileBadMagicAndVersion) {
  TempDir dir;
  expect_input_error([&] { GgufFile file(dir.file("absent.gguf")); }, {dir.file("absent.gguf") + ": "});
  Bytes bytes = read_bytes(kGgufPath);
  bytes[3] = 'X';
  write_bytes(dir.file("magic.gguf"), bytes);
  expect_input_error([&] { GgufFile file(dir.file("magic.gguf")); }, {dir.file("magic.gguf") + ": ", "magic"});
  bytes[3] = 'F';
  bytes[4] = 1;  // version 1 (32-bit lengths) is not read
  write_bytes(dir.file("v1.gguf"), bytes);
  expect_input_error([&] { GgufFile file(dir.file("v1.gguf")); }, {dir.file("v1.gguf") + ": ", "version 1"});
  write_bytes(dir.file("empty.gguf"), {});
  expect_input_error([&] { GgufFile file(dir.file("empty.gguf")); }, {dir.file("empty.gguf") + ": "});
}

TEST(GgufFileModelFiles, TruncatedCopiesAreInputErrors) {
  TempDir dir;
  const Bytes bytes = read_bytes(kGgufPath);
  // Inside: the magic, the counts, a metadata key, the token array, the tensor directory, the data section,
  // and the last tensor's final byte.
  for (std::size_t cut : {std::size_t(2), std::size_t(10), std::size_t(30), std::size_t(700), std::size_t(20000),
                          std::size_t(50000), std::size_t(50840), std::size_t(300000), bytes.size() - 1}) {
    const std::string path = dir.file("cut" + std::to_string(cut) + ".gguf");
    write_bytes(path, Bytes(bytes.begin(), bytes.begin() + std::ptrdiff_t(cut)));
    expect_input_error([&] { GgufFile file(path); }, {path + ": "});
  }
}

TEST(GgufFileModelFiles, HugeCountsAreRejectedWithoutAllocating) {
  TempDir dir;
  GgufWriter w;
  w.lying_array("general.huge", std::uint64_t(1) << 60);
  w.write(dir.file("huge.gguf"));
  expect_input_error([&] { GgufFile file(dir.file("huge.gguf")); }, {dir.file("huge.gguf") + ": "});

  Bytes header{'G', 'G', 'U', 'F'};
  append(header, std::uint32_t(3));
  append(header, std::uint64_t(1) << 62);  // tensors
  append(header, std::uint64_t(0));
  write_bytes(dir.file("tensors.gguf"), header);
  expect_input_error([&] { GgufFile file(dir.file("tensors.gguf")); }, {dir.file("tensors.gguf") + ": "});
}

// Random byte flips in the header region: every outcome is a parsed file or an InputError, never a crash.
TEST(GgufFileModelFiles, CorruptedHeadersNeverCrash) {
  TempDir dir;
  const Bytes original = read_bytes(kGgufPath);
  std::mt19937 generator(12345);
  std::uniform_int_distribution<std::size_t> position(4, 50900);
  std::uniform_int_distribution<int> byte(0, 255);
  int errors = 0;
  for (int trial = 0; trial < 150; ++trial) {
    Bytes bytes = original;
    for (int flip = 0; flip < 3; ++flip) bytes[position(generator)] = std::uint8_t(byte(generator));
    const std::string path = dir.file("corrupt.gguf");
    write_bytes(path, bytes);
    try {
      const GgufFile file(path);
      for (const GgufTensorInfo& t : file.tensors()) {
        if (t.type == 0 || t.type == 1 || t.type == 8 || t.type == 30) file.dequantize(t);
      }
    } catch (const InputError&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 0);
}

// =========================================================================================================
// SafetensorsFile.

TEST(SafetensorsModelFiles, ReadsTinyStoriesTensors) {
  const SafetensorsFile file(kSafetensorsPath);
  std::vector<std::string> names = file.names();
  EXPECT_EQ(names.size(), 20u);  // lm_head + 9 per layer + norm; the embedding is only aliased in metadata
  EXPECT_NE(std::find(names.begin(), names.end(), "lm_head.weight"), names.end());
  EXPECT_EQ(std::find(names.begin(), names.end(), "model.embed_tokens.weight"), names.end());
  const std::vector<std::pair<std::string, std::vector<std::int64_t>>> expected = {
      {"lm_head.weight", {2048, 128}},
      {"model.norm.weight", {128}},
      {"model.layers.0.input_layernorm.weight", {128}},
      {"model.layers.0.self_attn.q_proj.weight", {128, 128}},
      {"model.layers.0.self_attn.k_proj.weight", {64, 128}},
      {"model.layers.1.self_attn.v_proj.weight", {64, 128}},
      {"model.layers.1.self_attn.o_proj.weight", {128, 128}},
      {"model.layers.1.mlp.gate_proj.weight", {384, 128}},
      {"model.layers.1.mlp.up_proj.weight", {384, 128}},
      {"model.layers.1.mlp.down_proj.weight", {128, 384}},
      {"model.layers.1.post_attention_layernorm.weight", {128}}};
  std::int64_t total_bytes = 0;
  for (const std::string& name : names) total_bytes += std::int64_t(file.tensor(name).nbytes());
  // Every byte after the header belongs to exactly one tensor: 8 + header + data = file size.
  const Bytes raw = read_bytes(kSafetensorsPath);
  std::uint64_t header = 0;
  std::memcpy(&header, raw.data(), 8);
  EXPECT_EQ(std::uint64_t(total_bytes) + 8 + header, raw.size());
  for (const auto& [name, shape] : expected) {
    const WeightTensor t = file.tensor(name);
    EXPECT_EQ(t.shape, shape) << name;
    EXPECT_EQ(t.dtype, DType::kFloat32) << name;
    ASSERT_NE(t.data, nullptr);
  }
  expect_input_error([&] { file.tensor("model.embed_tokens.weight"); }, {kSafetensorsPath + ": ", "model.embed_tokens.weight"});
}

TEST(SafetensorsModelFiles, ReadsF16AndBF16AndMisalignedData) {
  TempDir dir;
  const std::vector<float> values = {1.5f, -0.25f, 3.0f, 1024.0f, -7.0f, 0.125f};
  write_safetensors(dir.file("m.safetensors"),
                    {{"a", {2, 3}, values, "F32"}, {"b", {3, 2}, values, "F16"}, {"c", {6}, values, "BF16"}}, 1);
  const SafetensorsFile file(dir.file("m.safetensors"));
  for (const char* name : {"a", "b", "c"}) {
    const WeightTensor t = file.tensor(name);
    EXPECT_EQ(t.to_floats(), values) << name;  // all values exact in every type
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data) % dtype_size(t.dtype), 0u) << name << " misaligned";
  }
  EXPECT_EQ(file.tensor("b").dtype, DType::kFloat16);
  EXPECT_EQ(file.tensor("c").dtype, DType::kBFloat16);
  EXPECT_EQ(file.tensor("b").shape, (std::vector<std::int64_t>{3, 2}));
}

TEST(SafetensorsModelFiles, RejectsMalformedFiles) {
  TempDir dir;
  auto rejects = [&](const std::string& name, const std::string& header, std::size_t data_bytes, const std::string& part) {
    const std::string path = dir.file(name);
    write_raw_safetensors(path, header, data_bytes);
    expect_input_error([&] { SafetensorsFile file(path); }, {path + ": ", part});
  };
  rejects("past_end.safetensors", R"({"w":{"dtype":"F32","shape":[1024],"data_offsets":[0,4096]}})", 16, "w");
  rejects("size.safetensors", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16, "w");
  rejects("order.safetensors", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 16, "w");
  rejects("dtype.safetensors", R"({"w":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}})", 16, "I64");
  rejects("json.safetensors", R"({"w":{"dtype":"F32",)", 16, "JSON");
  rejects("shape.safetensors", R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 16, "w");
  rejects("array.safetensors", R"([1,2])", 0, "object");

  Bytes lying;  // header length beyond the end of the file
  append(lying, std::uint64_t(1) << 40);
  write_bytes(dir.file("length.safetensors"), lying);
  expect_input_error([&] { SafetensorsFile file(dir.file("length.safetensors")); }, {dir.file("length.safetensors") + ": "});
  write_bytes(dir.file("tiny.safetensors"), Bytes{1, 2, 3});
  expect_input_error([&] { SafetensorsFile file(dir.file("tiny.safetensors")); }, {dir.file("tiny.safetensors") + ": "});
  expect_input_error([&] { SafetensorsFile file(dir.file("absent.safetensors")); }, {dir.file("absent.safetensors") + ": "});
}

// =========================================================================================================
// load_gguf_model.

TEST(GgufModelModelFiles, TinyStoriesConfigAndWeightsMatchSafetensors) {
  const LoadedModel model = load_gguf_model(kGgufPath);
  const ModelConfig& c = model.config;
  EXPECT_EQ(model.format, ModelFormat::kGguf);
  EXPECT_EQ(model.path, kGgufPath);
  EXPECT_EQ(model.files, std::vector<std::string>{kGgufPath});
  expect_tinystories_656k_config(c);  // the GGUF's Q/K rows are un-permuted at load: NeoX like the HF copy
  EXPECT_FALSE(model.weights.has("lm_head.weight"));

  // Every weight against the fp32 originals (the embedding against lm_head: the checkpoint ties them).
  const SafetensorsFile st(kSafetensorsPath);
  std::size_t compared = 0;
  for (const auto& [name, tensor] : model.weights.tensors()) {
    const std::string source = name == "model.embed_tokens.weight" ? "lm_head.weight" : name;
    const WeightTensor reference = st.tensor(source);
    EXPECT_EQ(tensor.dtype, DType::kFloat32) << name;
    ASSERT_EQ(tensor.shape, reference.shape) << name;
    const std::vector<float> expected = reference.to_floats(), actual = tensor.to_floats();
    if (tensor.shape.size() == 1) {
      EXPECT_EQ(actual, expected) << name << " (F32 in the GGUF: exact)";
    } else {
      EXPECT_EQ(q8_blocks_out_of_bound(actual, expected), 0u) << name;
    }
    ++compared;
  }
  EXPECT_EQ(compared, 20u);
}

TEST(GgufModelModelFiles, SyntheticLlamaIsUnpermutedIncludingBiases) {
  TempDir dir;
  TinyModel m;
  m.bias = true;  // llama with attention_bias: llama.cpp permutes the q/k biases like the rows
  const std::vector<TensorSpec> hf = write_gguf_model(dir.file("llama.gguf"), m);
  const LoadedModel model = load_gguf_model(dir.file("llama.gguf"));
  EXPECT_TRUE(model.config.qkv_bias);
  EXPECT_FALSE(model.config.tied_embeddings);
  EXPECT_EQ(model.config.n_kv_heads, 2);
  EXPECT_DOUBLE_EQ(model.config.rope_theta, 1e6);
  EXPECT_EQ(model.config.bos_token, 3);
  EXPECT_EQ(model.tokenizer, nullptr);  // the synthetic file has no vocabulary
  EXPECT_EQ(model.weights.tensors().size(), hf.size());
  for (const TensorSpec& t : hf) {
    ASSERT_TRUE(model.weights.has(t.name)) << t.name;
    EXPECT_EQ(model.weights.at(t.name).shape, t.shape) << t.name;
    EXPECT_EQ(model.weights.at(t.name).to_floats(), t.values) << t.name;
  }
}

TEST(GgufModelModelFiles, SyntheticQwen2AndQwen3AreNotPermuted) {
  for (const std::string arch : {"qwen2", "qwen3"}) {
    TempDir dir;
    TinyModel m;
    m.arch = arch;
    m.bias = arch == "qwen2";
    m.qk_norm = arch == "qwen3";
    m.head_dim = arch == "qwen3" ? 32 : 16;  // Qwen3: heads * head_dim != dim
    m.tied = arch == "qwen3";
    const std::vector<TensorSpec> hf = write_gguf_model(dir.file("m.gguf"), m);
    const LoadedModel model = load_gguf_model(dir.file("m.gguf"));
    EXPECT_EQ(architecture_name(model.config.architecture), arch);
    EXPECT_EQ(model.config.qkv_bias, arch == "qwen2");
    EXPECT_EQ(model.config.qk_norm, arch == "qwen3");
    EXPECT_EQ(model.config.head_dim, m.head_dim);
    EXPECT_EQ(model.config.tied_embeddings, m.tied);
    EXPECT_EQ(model.config.rope_style, RopeStyle::kNeox);
    for (const TensorSpec& t : hf) {
      ASSERT_TRUE(model.weights.has(t.name)) << arch << " " << t.name;
      EXPECT_EQ(model.weights.at(t.name).to_floats(), t.values) << arch << " " << t.name;
    }
    EXPECT_EQ(model.weights.has("model.layers.1.self_attn.q_proj.bias"), arch == "qwen2");
    EXPECT_EQ(model.weights.has("model.layers.1.self_attn.k_norm.weight"), arch == "qwen3");
  }
}

TEST(GgufModelModelFiles, RejectsUnsupportedArchitectureTypesAndRopeFreqs) {
  TempDir dir;
  TinyModel m;
  m.arch = "gemma";
  write_gguf_model(dir.file("gemma.gguf"), m);
  expect_input_error([&] { load_gguf_model(dir.file("gemma.gguf")); },
                     {dir.file("gemma.gguf") + ": ", "unsupported architecture gemma"});

  m.arch = "llama";
  write_gguf_model(dir.file("rope.gguf"), m, [](GgufWriter& w) { w.tensor_f32("rope_freqs.weight", {8}, std::vector<float>(8, 1)); });
  expect_input_error([&] { load_gguf_model(dir.file("rope.gguf")); },
                     {dir.file("rope.gguf") + ": ", "rope_freqs.weight", "Hugging Face"});

  // A Q4_K embedding (rows of 256): the loader names the tensor and the supported types.
  GgufWriter w;
  w.string("general.architecture", "llama");
  w.u32("llama.embedding_length", 256);
  w.u32("llama.feed_forward_length", 256);
  w.u32("llama.block_count", 1);
  w.u32("llama.attention.head_count", 8);
  w.u32("llama.context_length", 64);
  w.tensor("token_embd.weight", {4, 256}, 12, Bytes(4 * 144, 0));
  w.write(dir.file("q4k.gguf"));
  expect_input_error([&] { load_gguf_model(dir.file("q4k.gguf")); },
                     {dir.file("q4k.gguf") + ": tensor token_embd.weight has type Q4_K; supported: F32, F16, BF16, Q8_0"});
}

TEST(GgufModelModelFiles, MissingTensorAndMissingMetadataAreNamed) {
  TempDir dir;
  GgufWriter w;
  w.string("general.architecture", "llama");
  w.u32("llama.embedding_length", 64);
  w.u32("llama.feed_forward_length", 96);
  w.u32("llama.block_count", 1);
  w.u32("llama.attention.head_count", 4);
  w.u32("llama.context_length", 64);
  w.tensor_f32("token_embd.weight", {8, 64}, std::vector<float>(8 * 64, 0.5f));
  w.write(dir.file("partial.gguf"));
  expect_input_error([&] { load_gguf_model(dir.file("partial.gguf")); },
                     {dir.file("partial.gguf") + ": missing tensor blk.0.attn_norm.weight"});

  GgufWriter no_dim;
  no_dim.string("general.architecture", "qwen2");
  no_dim.write(dir.file("nodim.gguf"));
  expect_input_error([&] { load_gguf_model(dir.file("nodim.gguf")); },
                     {dir.file("nodim.gguf") + ": missing metadata qwen2.embedding_length"});
}

// =========================================================================================================
// load_huggingface_model.

TEST(HfModelModelFiles, LoadsTinyStoriesDirectory) {
  const LoadedModel model = load_huggingface_model(kModelDir);
  const ModelConfig& c = model.config;
  EXPECT_EQ(model.format, ModelFormat::kHuggingFace);
  EXPECT_EQ(model.path, kModelDir);
  expect_tinystories_656k_config(c);

  // The file holds only lm_head.weight: it becomes the embedding, and lm_head is dropped (tied).
  EXPECT_FALSE(model.weights.has("lm_head.weight"));
  const WeightTensor& embedding = model.weights.at("model.embed_tokens.weight", {2048, 128});
  EXPECT_EQ(embedding.dtype, DType::kFloat32);
  EXPECT_EQ(embedding.to_floats(), SafetensorsFile(kSafetensorsPath).tensor("lm_head.weight").to_floats());
  EXPECT_EQ(model.weights.tensors().size(), 20u);
  EXPECT_EQ(model.weights.at("model.layers.1.self_attn.k_proj.weight").shape, (std::vector<std::int64_t>{64, 128}));

  auto has_file = [&](const std::string& name) {
    return std::find(model.files.begin(), model.files.end(), kModelDir + "/" + name) != model.files.end();
  };
  EXPECT_TRUE(has_file("config.json"));
  EXPECT_TRUE(has_file("model.safetensors"));
  EXPECT_TRUE(has_file("tokenizer.json"));
  ASSERT_NE(model.tokenizer, nullptr);
  EXPECT_EQ(model.tokenizer->vocab_size(), 2048);
}

TEST(HfModelModelFiles, Qwen2DirectoryHasBiases) {
  TempDir dir;
  TinyModel m;
  m.arch = "qwen2";
  m.bias = true;
  write_hf_directory(dir.str(), m);
  const LoadedModel model = load_huggingface_model(dir.str());
  EXPECT_EQ(model.config.architecture, Architecture::kQwen2);
  EXPECT_TRUE(model.config.qkv_bias);
  EXPECT_FALSE(model.config.qk_norm);
  EXPECT_EQ(model.config.head_dim, 16);
  EXPECT_DOUBLE_EQ(model.config.rope_theta, 1e6);
  EXPECT_EQ(model.tokenizer, nullptr);  // no tokenizer.json
  for (const TensorSpec& t : hf_tensors(m)) {
    ASSERT_TRUE(model.weights.has(t.name)) << t.name;
    EXPECT_EQ(model.weights.at(t.name).to_floats(), t.values) << t.name;
  }
  EXPECT_EQ(model.weights.at("model.layers.1.self_attn.k_proj.bias").shape, std::vector<std::int64_t>{32});

  // Qwen2 always has the biases: a directory without them is incomplete.
  TempDir missing;
  write_hf_directory(missing.str(), m, "model.layers.0.self_attn.v_proj.bias");
  const std::string message = expect_input_error([&] { load_huggingface_model(missing.str()); }, {});
  EXPECT_EQ(message, missing.str() + "/model.safetensors: missing tensor model.layers.0.self_attn.v_proj.bias");
}

TEST(HfModelModelFiles, Qwen3DirectoryHasQkNormAndWideHeads) {
  TempDir dir;
  TinyModel m;
  m.arch = "qwen3";
  m.qk_norm = true;
  m.head_dim = 32;  // 4 heads * 32 = 128 != dim 64
  m.tied = true;
  write_hf_directory(dir.str(), m, "", ", \"attention_bias\": false");
  const LoadedModel model = load_huggingface_model(dir.str());
  EXPECT_EQ(model.config.architecture, Architecture::kQwen3);
  EXPECT_TRUE(model.config.qk_norm);
  EXPECT_FALSE(model.config.qkv_bias);
  EXPECT_EQ(model.config.head_dim, 32);
  EXPECT_EQ(model.config.q_dim(), 128);
  EXPECT_TRUE(model.config.tied_embeddings);
  EXPECT_EQ(model.weights.at("model.layers.0.self_attn.q_proj.weight").shape, (std::vector<std::int64_t>{128, 64}));
  EXPECT_EQ(model.weights.at("model.layers.0.self_attn.o_proj.weight").shape, (std::vector<std::int64_t>{64, 128}));
  EXPECT_EQ(model.weights.at("model.layers.1.self_attn.q_norm.weight").shape, std::vector<std::int64_t>{32});
  EXPECT_TRUE(model.weights.has("model.layers.1.self_attn.k_norm.weight"));
  EXPECT_FALSE(model.weights.has("lm_head.weight"));
}

TEST(HfModelModelFiles, ShardedDirectoryLoadsTheSameTensors) {
  TempDir single, sharded;
  TinyModel m;
  write_hf_directory(single.str(), m);
  const std::vector<TensorSpec> tensors = hf_tensors(m);
  const std::size_t half = tensors.size() / 2;
  write_safetensors(sharded.file("model-00001-of-00002.safetensors"), {tensors.begin(), tensors.begin() + std::ptrdiff_t(half)});
  write_safetensors(sharded.file("model-00002-of-00002.safetensors"), {tensors.begin() + std::ptrdiff_t(half), tensors.end()});
  std::string index = "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {";
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    index += std::string(i ? "," : "") + "\"" + tensors[i].name + "\": \"model-0000" + (i < half ? "1" : "2") + "-of-00002.safetensors\"";
  }
  write_text(sharded.file("model.safetensors.index.json"), index + "}}");
  write_text(sharded.file("config.json"), config_json(m));

  const LoadedModel a = load_huggingface_model(single.str());
  const LoadedModel b = load_huggingface_model(sharded.str());
  ASSERT_EQ(a.weights.tensors().size(), b.weights.tensors().size());
  for (const auto& [name, tensor] : a.weights.tensors()) {
    ASSERT_TRUE(b.weights.has(name)) << name;
    EXPECT_EQ(b.weights.at(name).shape, tensor.shape) << name;
    EXPECT_EQ(b.weights.at(name).to_floats(), tensor.to_floats()) << name;
  }
  EXPECT_EQ(b.files.size(), 4u);  // config, index, two shards

  // An index that leaves a tensor out is what a missing tensor is blamed on.
  const std::string left_out = tensors.back().name;
  const std::string entry = ",\"" + left_out + "\": \"model-00002-of-00002.safetensors\"";
  ASSERT_NE(index.find(entry), std::string::npos);
  write_text(sharded.file("model.safetensors.index.json"), index.erase(index.find(entry), entry.size()) + "}}");
  EXPECT_EQ(expect_input_error([&] { load_huggingface_model(sharded.str()); }, {}),
            sharded.file("model.safetensors.index.json") + ": missing tensor " + left_out);
}

TEST(HfModelModelFiles, ParsesLlama3RopeScalingAndEosList) {
  TempDir dir;
  TinyModel m;
  m.eos_json = "[128001, 128009]";  // Llama-3 lists several
  write_hf_directory(dir.str(), m, "",
                     ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 32.0, \"low_freq_factor\": 2.0, "
                     "\"high_freq_factor\": 8.0, \"original_max_position_embeddings\": 4096}");
  const LoadedModel model = load_huggingface_model(dir.str());
  EXPECT_TRUE(model.config.rope_scaling.enabled);
  EXPECT_DOUBLE_EQ(model.config.rope_scaling.factor, 32.0);
  EXPECT_DOUBLE_EQ(model.config.rope_scaling.low_freq_factor, 2.0);
  EXPECT_DOUBLE_EQ(model.config.rope_scaling.high_freq_factor, 8.0);
  EXPECT_EQ(model.config.rope_scaling.original_max_position, 4096);
  EXPECT_EQ(model.config.eos_token, 128001);  // the first of the list
  EXPECT_TRUE(model.weights.has("lm_head.weight"));  // untied
}

TEST(HfModelModelFiles, RejectsBadDirectories) {
  TempDir empty;
  expect_input_error([&] { load_huggingface_model(empty.str()); }, {empty.str() + "/config.json: "});

  TempDir mistral;
  TinyModel m;
  m.arch = "mistral";
  write_hf_directory(mistral.str(), m);
  const std::string message = expect_input_error([&] { load_huggingface_model(mistral.str()); }, {});
  EXPECT_EQ(message.rfind(mistral.str() + "/config.json: unsupported architecture mistral", 0), 0u) << message;

  TempDir yarn;
  m.arch = "llama";
  write_hf_directory(yarn.str(), m, "", ", \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4.0}");
  expect_input_error([&] { load_huggingface_model(yarn.str()); }, {yarn.str() + "/config.json: ", "yarn"});

  TempDir missing;
  write_hf_directory(missing.str(), m, "model.layers.1.mlp.down_proj.weight");
  EXPECT_EQ(expect_input_error([&] { load_huggingface_model(missing.str()); }, {}),
            missing.str() + "/model.safetensors: missing tensor model.layers.1.mlp.down_proj.weight");

  TempDir untied;  // tie_word_embeddings false and no lm_head
  write_hf_directory(untied.str(), m, "lm_head.weight");
  EXPECT_EQ(expect_input_error([&] { load_huggingface_model(untied.str()); }, {}),
            untied.str() + "/model.safetensors: missing tensor lm_head.weight");

  TempDir shape;  // config says 4 KV heads of 16 but the file has 2
  write_hf_directory(shape.str(), m);
  TinyModel wrong = m;
  wrong.kv_heads = 4;
  write_text(shape.str() + "/config.json", config_json(wrong));
  expect_input_error([&] { load_huggingface_model(shape.str()); },
                     {shape.str() + "/model.safetensors: tensor model.layers.0.self_attn.k_proj.weight has shape [32, 64], expected [64, 64]"});

  TempDir no_weights;
  write_text(no_weights.file("config.json"), config_json(m));
  expect_input_error([&] { load_huggingface_model(no_weights.str()); }, {no_weights.str() + ": ", "model.safetensors"});

  TempDir bad_json;
  write_text(bad_json.file("config.json"), "{\"model_type\": ");
  expect_input_error([&] { load_huggingface_model(bad_json.str()); }, {bad_json.str() + "/config.json: "});
}
