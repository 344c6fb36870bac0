#include "calib/calibration_state.h"

#include <set>

#include "core/error.h"

namespace oscar::calib {

HeadStatistics& CalibrationState::head(int layer_id, int kv_head) {
  auto found = heads.find({layer_id, kv_head});
  if (found == heads.end()) {
    found = heads.emplace(HeadKey{layer_id, kv_head}, HeadStatistics::zeros(mask, geometry.head_dim)).first;
  }
  return found->second;
}

std::vector<int> CalibrationState::layer_ids() const {
  std::set<int> ids;
  for (const auto& entry : heads) ids.insert(entry.first.first);
  return {ids.begin(), ids.end()};
}

void CalibrationState::require_complete_layer(int layer_id) const {
  for (int kv_head = 0; kv_head < geometry.num_kv_heads; ++kv_head) {
    if (!heads.count({layer_id, kv_head})) {
      throw InputError("layer " + std::to_string(layer_id) + " kv head " + std::to_string(kv_head) +
                       " has no statistics (a shard is missing: merge every layer range and tensor-parallel rank)");
    }
  }
}

void CalibrationState::require_complete_dump() const {
  std::map<int, std::set<int>> chunks_of_layer;
  for (const DumpChunk& chunk : dump_layout) chunks_of_layer[chunk.layer_id].insert(chunk.chunk_id);
  for (const auto& [layer_id, chunks] : chunks_of_layer) {
    require_complete_layer(layer_id);
    for (int kv_head = 0; kv_head < geometry.num_kv_heads; ++kv_head) {
      const HeadStatistics& head = heads.at({layer_id, kv_head});
      const std::string where = "layer " + std::to_string(layer_id) + " kv head " + std::to_string(kv_head);
      if (head.first_pass_chunks != chunks) {
        throw InputError(where + ": the states cover " + std::to_string(head.first_pass_chunks.size()) + " of " +
                         std::to_string(chunks.size()) + " chunks (a shard is missing; --allow-partial to fit anyway)");
      }
      if (mask.weighted_value && head.second_pass_chunks != chunks) {
        throw InputError(where + ": the sst pass covers " + std::to_string(head.second_pass_chunks.size()) + " of " +
                         std::to_string(chunks.size()) + " chunks (run --pass 2 on every shard)");
      }
    }
  }
}

std::int64_t CalibrationState::sequences_in_layer(int layer_id) const {
  const auto found = heads.find({layer_id, 0});
  if (found == heads.end()) return 0;
  std::int64_t sequences = 0;
  for (const DumpChunk& chunk : dump_layout) {
    if (chunk.layer_id == layer_id && found->second.first_pass_chunks.count(chunk.chunk_id)) sequences += chunk.sequences;
  }
  return sequences;
}

void require_same_source(const CalibrationState& state, const CalibrationState& other, const std::string& what) {
  if (!(other.geometry == state.geometry)) throw InputError(what + ": head geometry differs");
  if (!(other.dump_layout == state.dump_layout)) {
    throw InputError(what + ": made from another dump (its layers, chunks or token counts differ)");
  }
}

CalibrationState merge_states(const std::vector<CalibrationState>& states, const std::vector<std::string>& names) {
  if (states.empty()) throw UsageError("nothing to merge");
  CalibrationState merged;
  merged.geometry = states.front().geometry;
  merged.mask = states.front().mask;
  merged.source = states.front().source;
  merged.dump_layout = states.front().dump_layout;
  for (std::size_t i = 0; i < states.size(); ++i) {
    const CalibrationState& state = states[i];
    require_same_source(merged, state, names[i]);
    if (!(state.mask == merged.mask)) {
      throw InputError(names[i] + ": accumulated statistics differ from " + names.front() + " (different --method)");
    }
    for (const auto& [key, statistics] : state.heads) {
      const std::string what = names[i] + ": layer " + std::to_string(key.first) + " kv head " + std::to_string(key.second);
      add_statistics(merged.head(key.first, key.second), statistics, what);
    }
  }
  return merged;
}

}  // namespace oscar::calib
