#include "zoo/rotation_inspect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/rotation_gguf.h"
#include "io/rotation_pair.h"
#include "runtime/rotation.h"

namespace oscar::zoo {
namespace {

namespace fs = std::filesystem;

/// max |R·Rᵀ − I| over the heads of one layer, in double (the runtime's check of a loaded rotation).
double orthogonality_error(const io::LayerRotation& layer) {
  const runtime::Rotation rotation = layer.num_heads == 1
                                         ? runtime::Rotation::per_layer(layer.head_dim, layer.rotation)
                                         : runtime::Rotation::per_kv_head(layer.num_heads, layer.head_dim, layer.rotation);
  return rotation.orthogonality_error();
}

nlohmann::json describe_set(const io::RotationSet& set) {
  nlohmann::json layers = nlohmann::json::array();
  double worst = 0;
  for (const io::LayerRotation& layer : set.layers) {
    const auto [low, high] = std::minmax_element(layer.eigenvalues.begin(), layer.eigenvalues.end());
    const double error = orthogonality_error(layer);
    worst = std::max(worst, error);
    layers.push_back({{"layer_id", layer.layer_id}, {"orthogonality_error", error},
                      {"min_eigenvalue", layer.eigenvalues.empty() ? 0.0 : double(*low)},
                      {"max_eigenvalue", layer.eigenvalues.empty() ? 0.0 : double(*high)}});
  }
  const io::LayerRotation* first = set.layers.empty() ? nullptr : &set.layers.front();
  return {{"objective", set.objective}, {"format_version", set.format_version}, {"granularity", set.source_grouping},
          {"layers", set.layers.size()}, {"head_dim", first ? first->head_dim : 0}, {"heads_per_layer", first ? first->num_heads : 0},
          {"max_orthogonality_error", worst}, {"per_layer", layers}};
}

nlohmann::json calibration_record_beside(const fs::path& dir) {
  std::ifstream in(dir / "calibration.json");
  if (!in) return nullptr;
  try {
    const nlohmann::json record = nlohmann::json::parse(in);
    return {{"calibration_json", (dir / "calibration.json").string()}, {"tag", record.value("tag", "")},
            {"inputs", record.value("inputs", nlohmann::json::array())}};
  } catch (const nlohmann::json::exception&) {
    return {{"calibration_json", (dir / "calibration.json").string()}, {"problem", "not JSON"}};
  }
}

}  // namespace

nlohmann::json inspect_rotations(const std::string& path) {
  if (!fs::exists(path)) throw InputError(path + ": no such file or directory");
  nlohmann::json description = {{"path", path}};
  if (fs::path(path).extension() == ".pt") {
    description["kind"] = "pt";
    description["sets"] = {describe_set(io::read_rotation_set(path))};
    description["provenance"] = calibration_record_beside(fs::path(path).parent_path());
    return description;
  }
  if (fs::is_directory(path)) {
    const io::RotationPair pair = io::read_rotation_pair(path);
    description["sets"] = {describe_set(pair.key), describe_set(pair.value)};
    description["kind"] = "directory";
    description["provenance"] = calibration_record_beside(path);
  } else {
    if (fs::path(path).extension() != ".gguf") throw InputError(path + ": expected a rotation directory or a .gguf file");
    io::RotationProvenance provenance;
    const io::RotationPair pair = io::read_rotation_gguf(path, &provenance);
    description["sets"] = {describe_set(pair.key), describe_set(pair.value)};
    const io::GgufReader reader(path);
    description["kind"] = reader.get_string("general.architecture") == io::rotation_gguf::kStandaloneArchitecture ? "gguf" : "gguf-baked";
    description["provenance"] = {{"tag", provenance.calibration_tag}, {"k_clip", provenance.key_clip}, {"v_clip", provenance.value_clip},
                                 {"tool_version", reader.get_string("oscar.tool_version")},
                                 {"base_tensors", reader.tensors().size() - 2 * pair.key.layers.size()}};
  }
  return description;
}

std::string inspect_text(const nlohmann::json& description) {
  std::ostringstream out;
  out << description["path"].get<std::string>() << " (" << description["kind"].get<std::string>() << ")\n";
  for (const auto& set : description["sets"]) {
    char line[256];
    std::snprintf(line, sizeof line, "  %s: %zu layers, head_dim %d, %d matrix(es)/layer (%s), max |R·Rt - I| %.2e\n",
                  set["objective"].get<std::string>().c_str(), set["layers"].get<size_t>(), set["head_dim"].get<int>(),
                  set["heads_per_layer"].get<int>(), set["granularity"].get<std::string>().c_str(),
                  set["max_orthogonality_error"].get<double>());
    out << line;
    for (const auto& layer : set["per_layer"]) {
      std::snprintf(line, sizeof line, "    layer %3d  eigenvalues [%.4g, %.4g]  orthogonality %.1e\n", layer["layer_id"].get<int>(),
                    layer["min_eigenvalue"].get<double>(), layer["max_eigenvalue"].get<double>(), layer["orthogonality_error"].get<double>());
      out << line;
    }
  }
  if (!description["provenance"].is_null()) out << "  provenance: " << description["provenance"].dump() << "\n";
  return out.str();
}

}  // namespace oscar::zoo
