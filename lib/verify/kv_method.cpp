#include "verify/kv_method.h"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "io/rotation_set.h"
#include "linalg/composition.h"
#include "io/rotation_pair.h"
#ifdef OSCAR_VERIFY_CUDA_RUNTIME
#include "runtime/cuda/baselines_cuda.h"
#endif

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

/// One rotation per model layer from a rotation set read from `file`.
std::vector<runtime::Rotation> rotations_from_set(const io::RotationSet& set, const std::string& file,
                                                  const model::ModelConfig& config) {
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

}  // namespace

const std::vector<std::string>& known_methods() {
  static const std::vector<std::string> names = {"fp",         "naive",           "hadamard",        "oscar",
                                                 "naive-sym",  "naive-asym",      "quarot",          "kivi2",
                                                 "turboquant-k3v3", "turboquant-k2v2", "eoptshrinkq"};
  return names;
}

std::vector<std::string> parse_method_list(const std::string& list) {
  std::vector<std::string> names;
  std::stringstream stream(list);
  for (std::string name; std::getline(stream, name, ',');) {
    const auto& known = known_methods();
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string list;
      for (const std::string& known_name : known) list += (list.empty() ? "" : ", ") + known_name;
      throw UsageError("--methods: unknown method '" + name + "' (known: " + list + ")");
    }
    if (std::find(names.begin(), names.end(), name) != names.end()) throw UsageError("--methods: '" + name + "' given twice");
    names.push_back(name);
  }
  if (names.empty()) throw UsageError("--methods: no method given");
  return names;
}

LayerRotations load_rotations(const std::string& path, const model::ModelConfig& config) {
  LayerRotations rotations;
  const io::RotationPair pair = io::read_rotation_pair(path);
  const bool directory = fs::is_directory(path);
  const std::string key_file = directory ? io::find_rotation_file(path, "k_rotation_") : path;
  const std::string value_file = directory ? io::find_rotation_file(path, "v_rotation_") : path;
  rotations.key = rotations_from_set(pair.key, key_file, config);
  rotations.value = rotations_from_set(pair.value, value_file, config);
  rotations.key_objective = pair.key.objective;
  rotations.value_objective = pair.value.objective;
  rotations.files = directory ? std::vector<std::string>{key_file, value_file} : std::vector<std::string>{path};
  return rotations;
}

namespace {

/// A baseline's key and value quantizers; the verify name maps to the runtime name and its bits.
void add_quantizers(KvMethod& method, const runtime::MixedCacheConfig& cache, bool on_gpu) {
  runtime::QuantizerOptions options;
  options.group_size = cache.key_int2.group_size;
  options.key_int2 = cache.key_int2;
  options.value_int2 = cache.value_int2;
  std::string runtime_name = method.name;
  if (method.name == "turboquant-k3v3" || method.name == "turboquant-k2v2") {
    runtime_name = "turboquant";
    options.turboquant_bits = method.name == "turboquant-k3v3" ? 3 : 2;
  }
  try {
#ifdef OSCAR_VERIFY_CUDA_RUNTIME
    // On the GPU, the per-row methods run in the CUDA runtime's kernels (bit-identical to the CPU classes).
    if (on_gpu) {
      method.key_quantizer = runtime::gpu::make_cuda_kv_quantizer(runtime_name, runtime::KvKind::kKey, options);
      method.value_quantizer = runtime::gpu::make_cuda_kv_quantizer(runtime_name, runtime::KvKind::kValue, options);
    }
#else
    (void)on_gpu;  // this build has no CUDA runtime: the CPU classes everywhere
#endif
    if (!method.key_quantizer) method.key_quantizer = runtime::make_kv_quantizer(runtime_name, runtime::KvKind::kKey, options);
    if (!method.value_quantizer) method.value_quantizer = runtime::make_kv_quantizer(runtime_name, runtime::KvKind::kValue, options);
  } catch (const std::invalid_argument& error) {
    throw UsageError("--methods " + method.name + ": " + error.what());
  }
}

}  // namespace

std::vector<KvMethod> make_methods(const std::vector<std::string>& names, const model::ModelConfig& config,
                                   const LayerRotations* calibrated, const runtime::MixedCacheConfig& cache,
                                   bool on_gpu) {
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
    } else {
      add_quantizers(method, cache, on_gpu);
    }
    methods.push_back(std::move(method));
  }
  return methods;
}

}  // namespace oscar::verify
