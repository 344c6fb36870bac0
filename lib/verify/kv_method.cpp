#include "verify/kv_method.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "io/rotation_set.h"
#include "linalg/composition.h"
#include "model/gguf_file.h"

namespace oscar::verify {
namespace {

namespace fs = std::filesystem;

/// Largest |R·Rᵀ − I| accepted: float32 files of eigenvectors are orthogonal to ~1e-6.
constexpr double kOrthogonalityTolerance = 1e-3;

runtime::Rotation make_rotation(int heads, int head_dim, std::vector<float> matrix) {
  return heads == 1 ? runtime::Rotation::per_layer(head_dim, std::move(matrix))
                    : runtime::Rotation::per_kv_head(heads, head_dim, std::move(matrix));
}

void check_rotation(const runtime::Rotation& rotation, const model::ModelConfig& config, const std::string& file,
                    const std::string& what) {
  if (rotation.head_dim() != config.head_dim) {
    throw InputError(file + ": " + what + " is " + std::to_string(rotation.head_dim()) + "x" +
                     std::to_string(rotation.head_dim()) + ", the model's head_dim is " + std::to_string(config.head_dim));
  }
  if (rotation.heads() != 1 && rotation.heads() != config.n_kv_heads) {
    throw InputError(file + ": " + what + " has " + std::to_string(rotation.heads()) + " KV-head matrices, the model has " +
                     std::to_string(config.n_kv_heads) + " KV heads");
  }
  const double error = rotation.orthogonality_error();
  if (!(error <= kOrthogonalityTolerance)) {
    std::ostringstream message;
    message << file << ": " << what << " is not orthogonal (max |R·Rt - I| = " << error << ")";
    throw InputError(message.str());
  }
}

/// One rotation per model layer from a .pt zoo file.
std::vector<runtime::Rotation> rotations_from_pt(const std::string& file, const model::ModelConfig& config,
                                                 std::string& objective) {
  const io::RotationSet set = io::read_rotation_set(file);
  objective = set.objective;
  std::vector<runtime::Rotation> result(static_cast<size_t>(config.n_layers));
  std::vector<bool> seen(result.size(), false);
  for (const io::LayerRotation& layer : set.layers) {
    if (layer.layer_id < 0 || layer.layer_id >= config.n_layers) {
      throw InputError(file + ": layer " + std::to_string(layer.layer_id) + " does not exist in a " +
                       std::to_string(config.n_layers) + "-layer model");
    }
    result[static_cast<size_t>(layer.layer_id)] = make_rotation(layer.num_heads, layer.head_dim, layer.rotation);
    seen[static_cast<size_t>(layer.layer_id)] = true;
    check_rotation(result[static_cast<size_t>(layer.layer_id)], config, file, "layer " + std::to_string(layer.layer_id));
  }
  const auto missing = std::find(seen.begin(), seen.end(), false);
  if (missing != seen.end()) throw InputError(file + ": no rotation for layer " + std::to_string(missing - seen.begin()));
  return result;
}

/// The one file in `dir` whose name starts with `prefix` and ends in .pt.
std::string find_zoo_file(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name.rfind(prefix, 0) == 0 && entry.path().extension() == ".pt") found.push_back(entry.path().string());
  }
  std::sort(found.begin(), found.end());
  if (found.empty()) throw InputError(dir + ": no " + prefix + "*.pt rotation file");
  if (found.size() > 1) throw InputError(dir + ": several " + prefix + "*.pt files (" + found[0] + ", " + found[1] + "): pass one set per directory");
  return found.front();
}

/// blk.{i}.attn_{k,v}_rot.weight hold Mᵀ ([d, d], or [Hkv, d, d] per KV head): transpose back.
std::vector<runtime::Rotation> rotations_from_gguf(const model::GgufFile& file, const std::string& kind,
                                                   const model::ModelConfig& config) {
  std::vector<runtime::Rotation> result;
  for (int layer = 0; layer < config.n_layers; ++layer) {
    const std::string name = "blk." + std::to_string(layer) + ".attn_" + kind + "_rot.weight";
    const model::GgufTensorInfo* info = file.find_tensor(name);
    if (!info) throw InputError(file.path() + ": missing tensor " + name);
    const auto& shape = info->shape;
    const bool per_head = shape.size() == 3;
    if ((shape.size() != 2 && !per_head) || shape[shape.size() - 1] != shape[shape.size() - 2]) {
      throw InputError(file.path() + ": " + name + " is not a square matrix (or a stack of them)");
    }
    const int d = static_cast<int>(shape.back()), heads = per_head ? static_cast<int>(shape[0]) : 1;
    const std::vector<float> stored = file.dequantize(*info);
    std::vector<float> matrix(stored.size());
    for (int h = 0; h < heads; ++h) {
      const size_t base = static_cast<size_t>(h) * d * d;
      for (int i = 0; i < d; ++i) {
        for (int j = 0; j < d; ++j) matrix[base + static_cast<size_t>(i) * d + j] = stored[base + static_cast<size_t>(j) * d + i];
      }
    }
    result.push_back(make_rotation(heads, d, std::move(matrix)));
    check_rotation(result.back(), config, file.path(), name);
  }
  return result;
}

}  // namespace

const std::vector<std::string>& known_methods() {
  static const std::vector<std::string> names = {"fp", "naive", "hadamard", "oscar"};
  return names;
}

std::vector<std::string> parse_method_list(const std::string& list) {
  std::vector<std::string> names;
  std::stringstream stream(list);
  for (std::string name; std::getline(stream, name, ',');) {
    const auto& known = known_methods();
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      throw UsageError("--methods: unknown method '" + name + "' (known: fp, naive, hadamard, oscar)");
    }
    if (std::find(names.begin(), names.end(), name) != names.end()) throw UsageError("--methods: '" + name + "' given twice");
    names.push_back(name);
  }
  if (names.empty()) throw UsageError("--methods: no method given");
  return names;
}

LayerRotations load_rotations(const std::string& path, const model::ModelConfig& config) {
  LayerRotations rotations;
  if (!fs::exists(path)) throw InputError(path + ": no such file or directory");
  if (fs::is_directory(path)) {
    const std::string key_file = find_zoo_file(path, "k_rotation_"), value_file = find_zoo_file(path, "v_rotation_");
    rotations.key = rotations_from_pt(key_file, config, rotations.key_objective);
    rotations.value = rotations_from_pt(value_file, config, rotations.value_objective);
    rotations.files = {key_file, value_file};
    return rotations;
  }
  if (fs::path(path).extension() != ".gguf") throw InputError(path + ": expected a rotation directory or a .gguf file");
  const model::GgufFile file(path);
  rotations.key = rotations_from_gguf(file, "k", config);
  rotations.value = rotations_from_gguf(file, "v", config);
  rotations.key_objective = file.get_string("oscar.key_objective", "");
  rotations.value_objective = file.get_string("oscar.value_objective", "");
  rotations.files = {path};
  return rotations;
}

std::vector<KvMethod> make_methods(const std::vector<std::string>& names, const model::ModelConfig& config,
                                   const LayerRotations* calibrated) {
  std::vector<KvMethod> methods;
  const size_t layers = static_cast<size_t>(config.n_layers);
  for (const std::string& name : names) {
    KvMethod method;
    method.name = name;
    if (name == "fp") {
      method.full_precision = true;
    } else if (name == "naive") {
      method.rotations.key.assign(layers, runtime::Rotation::identity());
      method.rotations.value = method.rotations.key;
    } else if (name == "hadamard") {
      const linalg::Matrix h = linalg::hadamard_rotation(config.head_dim);
      std::vector<float> matrix(static_cast<size_t>(h.size()));
      for (long i = 0; i < h.rows(); ++i) {
        for (long j = 0; j < h.cols(); ++j) matrix[static_cast<size_t>(i * h.cols() + j)] = static_cast<float>(h(i, j));
      }
      method.rotations.key.assign(layers, runtime::Rotation::per_layer(config.head_dim, matrix));
      method.rotations.value = method.rotations.key;
      method.rotations.key_objective = method.rotations.value_objective = "hadamard";
    } else if (name == "oscar") {
      if (!calibrated) throw UsageError("--methods oscar needs --rotations DIR|FILE.gguf");
      method.rotations = *calibrated;
    }
    methods.push_back(std::move(method));
  }
  return methods;
}

}  // namespace oscar::verify
