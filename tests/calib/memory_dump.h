// An in-memory ActivationDump with random anisotropic float32 activations, for calibration tests.
#pragma once

#include <map>
#include <random>
#include <tuple>

#include "io/activation_dump.h"

namespace oscar::test_support {

class MemoryDump : public io::ActivationDump {
 public:
  /// layers × chunks of `tokens_per_chunk + chunk` tokens each, chunk ids 1..chunks.
  MemoryDump(int layers, int chunks, int tokens_per_chunk, io::DumpGeometry geometry, unsigned seed)
      : geometry_(geometry) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal;
    for (int layer = 0; layer < layers; ++layer) {
      layer_ids_.push_back(layer);
      for (int chunk = 1; chunk <= chunks; ++chunk) {
        chunk_ids_[layer].push_back(chunk);
        const int tokens = tokens_per_chunk + chunk;
        for (auto projection : {io::Projection::kQuery, io::Projection::kKey, io::Projection::kValue}) {
          const int heads = projection == io::Projection::kQuery ? geometry.num_q_heads : geometry.num_kv_heads;
          HostTensor tensor;
          tensor.shape = {tokens, heads, geometry.head_dim};
          tensor.bytes.resize(tensor.nbytes());
          auto* values = reinterpret_cast<float*>(tensor.bytes.data());
          for (std::int64_t i = 0; i < tensor.numel(); ++i) {
            const int dim = int(i % geometry.head_dim);
            const int head = int((i / geometry.head_dim) % heads);
            // Per-dimension scales make eigenvalues distinct; per-head offsets make heads differ.
            values[i] = normal(rng) * (1.0f + 0.3f * dim) + 0.1f * float(head + layer);
          }
          tensors_[{layer, chunk, int(projection)}] = std::move(tensor);
        }
      }
    }
  }

  /// Overwrites one element (e.g. with NaN).
  void poke(int layer, int chunk, io::Projection projection, std::int64_t index, float value) {
    reinterpret_cast<float*>(tensors_.at({layer, chunk, int(projection)}).bytes.data())[index] = value;
  }

  const std::string& path() const override { return path_; }
  const std::vector<int>& layer_ids() const override { return layer_ids_; }
  const io::DumpGeometry& geometry() const override { return geometry_; }
  const std::vector<int>& chunk_ids(int layer) const override { return chunk_ids_.at(layer); }
  std::int64_t chunk_tokens(int layer, int chunk) const override {
    return tensors_.at({layer, chunk, 0}).shape[0];
  }
  HostTensor read(int layer, int chunk, io::Projection projection) const override {
    return tensors_.at({layer, chunk, int(projection)});
  }
  std::vector<std::int32_t> seq_lens(int, int) const override { return {}; }

 private:
  std::string path_ = "memory-dump";
  io::DumpGeometry geometry_;
  std::vector<int> layer_ids_;
  std::map<int, std::vector<int>> chunk_ids_;
  std::map<std::tuple<int, int, int>, HostTensor> tensors_;
};

}  // namespace oscar::test_support
