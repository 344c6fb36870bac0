// A model's weights by Hugging Face Llama name, in Hugging Face's layout, whatever file they came from:
//
//   model.embed_tokens.weight                       [vocab, dim]
//   model.layers.{i}.input_layernorm.weight         [dim]
//   model.layers.{i}.self_attn.{q,k,v}_proj.weight  [q_dim | kv_dim, dim]   (+ .bias [out] for Qwen2)
//   model.layers.{i}.self_attn.{q,k}_norm.weight    [head_dim]              (Qwen3)
//   model.layers.{i}.self_attn.o_proj.weight        [dim, q_dim]
//   model.layers.{i}.post_attention_layernorm.weight [dim]
//   model.layers.{i}.mlp.{gate,up}_proj.weight      [hidden, dim]
//   model.layers.{i}.mlp.down_proj.weight           [dim, hidden]
//   model.norm.weight                               [dim]
//   lm_head.weight                                  [vocab, dim]            (absent when tied)
//
// Matrices are [out, in] (y = W x), rows of q/k in the pairing of ModelConfig::rope_style. A tensor either
// owns its bytes or points into a memory-mapped file kept alive by `owner`. Plain C++: no LibTorch.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace oscar::model {

struct WeightTensor {
  DType dtype = DType::kFloat32;      ///< kFloat32, kFloat16 or kBFloat16
  std::vector<std::int64_t> shape;    ///< outermost first, C-contiguous, little-endian
  const void* data = nullptr;
  std::shared_ptr<const void> owner;  ///< keeps `data` alive (a vector, or a file mapping)

  std::int64_t numel() const;
  std::size_t nbytes() const { return std::size_t(numel()) * dtype_size(dtype); }

  /// A tensor owning `values` (float32).
  static WeightTensor from_floats(std::vector<float> values, std::vector<std::int64_t> shape);
  /// Element i widened to float.
  float element(std::int64_t i) const;
  /// All elements widened to float32.
  std::vector<float> to_floats() const;
};

class ModelWeights {
 public:
  /// `source` names the file or directory in error messages.
  explicit ModelWeights(std::string source = "") : source_(std::move(source)) {}

  void add(const std::string& name, WeightTensor tensor);
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  /// Throws oscar::InputError("<source>: missing tensor <name>").
  const WeightTensor& at(const std::string& name) const;
  /// Like at(), and also requires this shape: InputError("<source>: tensor <name> has shape [..], expected [..]").
  const WeightTensor& at(const std::string& name, const std::vector<std::int64_t>& shape) const;
  const std::map<std::string, WeightTensor>& tensors() const { return tensors_; }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::map<std::string, WeightTensor> tensors_;
};

/// "model.layers.3.self_attn.q_proj.weight" from (3, "self_attn.q_proj.weight").
std::string layer_tensor_name(int layer, const std::string& suffix);

}  // namespace oscar::model
