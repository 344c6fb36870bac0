// The chunk index both activation dump readers (SglangDump, HDF5's Hdf5Dump) build when a dump is opened.
//
// Each reader validates its whole dump at open and records, per layer, the chunk ids and per chunk the token
// count and seq_lens. From then on chunk_ids(), chunk_tokens() and seq_lens() are plain look-ups that are the
// same for either layout, so they live here once; only read() and the way the index is filled differ, and
// those stay in the readers.
//
// The per-chunk record is the reader's own type (template parameter Chunk) so that a reader can keep its
// layout-specific details next to the shared fields and find them with the same single look-up (Hdf5Dump
// keeps where the chunk starts in its datasets). Chunk must have the members
//   std::int64_t tokens;                  // token count, equal for q, k and v
//   std::vector<std::int32_t> seq_lens;   // per-sequence token counts; empty when the dump has none
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "io/activation_dump.h"

namespace oscar::io {

template <class Chunk>
class IndexedActivationDump : public ActivationDump {
 public:
  const std::string& path() const override { return path_; }
  const std::vector<int>& layer_ids() const override { return layer_ids_; }
  const DumpGeometry& geometry() const override { return geometry_; }
  const std::vector<int>& chunk_ids(int layer_id) const override { return layer_info(layer_id).chunk_ids; }
  std::int64_t chunk_tokens(int layer_id, int chunk_id) const override { return chunk_info(layer_id, chunk_id).tokens; }
  std::vector<std::int32_t> seq_lens(int layer_id, int chunk_id) const override {
    return chunk_info(layer_id, chunk_id).seq_lens;
  }

 protected:
  struct LayerInfo {
    std::vector<int> chunk_ids;  ///< numeric order; exactly the keys of chunks
    std::map<int, Chunk> chunks;
  };

  explicit IndexedActivationDump(std::string path) : path_(std::move(path)) {}

  // Ids that are not in the dump are the caller's mistake, not bad input: std::out_of_range, not InputError.
  const LayerInfo& layer_info(int layer_id) const {
    const auto layer = layers_.find(layer_id);
    if (layer == layers_.end()) throw std::out_of_range(path_ + ": no layer " + std::to_string(layer_id));
    return layer->second;
  }

  const Chunk& chunk_info(int layer_id, int chunk_id) const {
    const LayerInfo& layer = layer_info(layer_id);
    const auto chunk = layer.chunks.find(chunk_id);
    if (chunk == layer.chunks.end()) {
      throw std::out_of_range(path_ + ": layer " + std::to_string(layer_id) + " has no chunk " +
                              std::to_string(chunk_id));
    }
    return chunk->second;
  }

  // Filled by the reader's constructor, read-only afterwards.
  std::string path_;
  DumpGeometry geometry_;
  std::vector<int> layer_ids_;  ///< ascending, 0..N-1
  std::map<int, LayerInfo> layers_;
};

}  // namespace oscar::io
