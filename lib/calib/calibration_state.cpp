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
      throw UsageError("layer " + std::to_string(layer_id) + " has no statistics for kv head " +
                       std::to_string(kv_head) + " (merge the states of every tensor-parallel rank)");
    }
  }
}

CalibrationState merge_states(const std::vector<CalibrationState>& states, const std::vector<std::string>& names) {
  if (states.empty()) throw UsageError("nothing to merge");
  CalibrationState merged;
  merged.geometry = states.front().geometry;
  merged.mask = states.front().mask;
  merged.source = states.front().source;
  for (std::size_t i = 0; i < states.size(); ++i) {
    const CalibrationState& state = states[i];
    if (!(state.geometry == merged.geometry)) {
      throw InputError(names[i] + ": head geometry differs from " + names.front());
    }
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
