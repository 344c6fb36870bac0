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

std::map<int, std::set<int>> CalibrationState::chunks_by_layer() const {
  std::map<int, std::set<int>> chunks;
  for (const DumpChunk& chunk : dump_layout) chunks[chunk.layer_id].insert(chunk.chunk_id);
  return chunks;
}

void CalibrationState::require_chunks_in_layout() const {
  std::map<int, std::set<int>> layout = chunks_by_layer();
  for (const auto& [key, head] : heads) {
    const std::set<int>& layer_chunks = layout[key.first];
    const auto check = [&](const char* name, const std::set<int>& chunks) {
      for (int chunk : chunks) {
        if (layer_chunks.count(chunk)) continue;
        throw InputError("layer_" + std::to_string(key.first) + "/kv_head_" + std::to_string(key.second) + ": " + name +
                         " lists chunk " + std::to_string(chunk) + ", which dump_layout lacks");
      }
    };
    check("first_pass_chunks", head.first_pass_chunks);
    check("second_pass_chunks", head.second_pass_chunks);
  }
}

void CalibrationState::require_complete_dump() const {
  for (const auto& [layer_id, chunks] : chunks_by_layer()) {
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
