#include "io/rotation_set.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <stdexcept>

#include "core/error.h"
#include "io/pickle.h"
#include "io/zip_archive.h"

namespace oscar::io {

namespace {

using pickle::Kind;
using pickle::Value;
using pickle::ValuePtr;

const char* expected_grouping(int format_version) {
  return format_version == rotation_format::kPerKvHeadFormatVersion ? rotation_format::kPerKvHeadGrouping
                                                                    : rotation_format::kLayerGrouping;
}

std::string layer_prefix(int layer_id) { return "layer " + std::to_string(layer_id) + ": "; }

// ---------------------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------------------

class RotationSetReader {
 public:
  explicit RotationSetReader(const std::string& path) : archive_(path) {}

  RotationSet read() {
    const ValuePtr root = archive_.load_pickle();
    if (!root->is(Kind::kDict)) fail(std::string("top level is a ") + pickle::kind_name(root->kind) + ", expected a dict");
    RotationSet rotations;
    rotations.format_version = read_format_version(*root);
    rotations.objective = required(*root, "objective", Kind::kString).text;
    rotations.source_grouping = read_grouping(*root, rotations.format_version);

    const Value& layers = required(*root, "layers", Kind::kDict);
    if (layers.entries.empty()) fail("'layers' is empty");
    for (const auto& [key, value] : layers.entries) {
      rotations.layers.push_back(read_layer(layer_id_of(*key), *value, rotations.format_version));
    }
    std::sort(rotations.layers.begin(), rotations.layers.end(),
              [](const LayerRotation& a, const LayerRotation& b) { return a.layer_id < b.layer_id; });
    for (std::size_t i = 1; i < rotations.layers.size(); ++i) {
      if (rotations.layers[i].layer_id == rotations.layers[i - 1].layer_id) {
        fail("layer " + std::to_string(rotations.layers[i].layer_id) + " appears twice");
      }
    }
    return rotations;
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const { archive_.zip().fail(problem); }

  const Value& required(const Value& dict, const char* key, Kind kind, const std::string& prefix = "") const {
    const Value* value = dict.find(key);
    if (!value) fail(prefix + "missing '" + key + "'");
    if (!value->is(kind)) {
      fail(prefix + "'" + key + "' is a " + pickle::kind_name(value->kind) + ", expected a " + pickle::kind_name(kind));
    }
    return *value;
  }

  int read_format_version(const Value& root) const {
    const std::int64_t version = required(root, "format_version", Kind::kInt).integer;
    if (version != rotation_format::kLayerFormatVersion && version != rotation_format::kPerKvHeadFormatVersion) {
      fail("format_version " + std::to_string(version) + " is not supported (expected 1 or 2)");
    }
    return int(version);
  }

  // Optional in the schema (format 1 files of early reference versions lack it), but never contradictory.
  std::string read_grouping(const Value& root, int format_version) const {
    const std::string expected = expected_grouping(format_version);
    if (!root.find("source_grouping")) return expected;
    const std::string grouping = required(root, "source_grouping", Kind::kString).text;
    if (grouping != expected) {
      fail("source_grouping '" + grouping + "' does not match format_version " + std::to_string(format_version) +
           " (expected '" + expected + "')");
    }
    return grouping;
  }

  // Layer keys are ints; loaders (and JSON round trips) may have turned them into decimal strings.
  int layer_id_of(const Value& key) const {
    if (key.is(Kind::kInt)) {
      if (key.integer < 0 || key.integer > INT_MAX) fail("layer key " + std::to_string(key.integer) + " is out of range");
      return int(key.integer);
    }
    if (key.is(Kind::kString)) {
      const std::string& text = key.text;
      const bool decimal = !text.empty() && text.size() <= 9 &&
                           std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!decimal) fail("layer key '" + text + "' is not a layer number");
      return std::stoi(text);
    }
    fail(std::string("layer key is a ") + pickle::kind_name(key.kind) + ", expected an int");
  }

  LayerRotation read_layer(int layer_id, const Value& layer, int format_version) {
    const std::string prefix = layer_prefix(layer_id);
    if (!layer.is(Kind::kDict)) fail(prefix + "is a " + pickle::kind_name(layer.kind) + ", expected a dict");
    if (const Value* recorded_id = layer.find("layer_id")) {
      if (!recorded_id->is(Kind::kInt) || recorded_id->integer != layer_id) fail(prefix + "'layer_id' does not match its key");
    }
    const pickle::TensorRef& rotation = required(layer, "rotation", Kind::kTensor, prefix).tensor;
    const pickle::TensorRef& eigenvalues = required(layer, "eigenvalues", Kind::kTensor, prefix).tensor;

    LayerRotation result;
    result.layer_id = layer_id;
    check_shapes(prefix, rotation.shape, eigenvalues.shape, format_version, &result);
    check_geometry(prefix, result);
    result.rotation = load_floats(rotation, prefix + "rotation");
    result.eigenvalues = load_floats(eigenvalues, prefix + "eigenvalues");
    return result;
  }

  void check_shapes(const std::string& prefix, const std::vector<std::int64_t>& rotation,
                    const std::vector<std::int64_t>& eigenvalues, int format_version, LayerRotation* layer) const {
    const bool per_head = format_version == rotation_format::kPerKvHeadFormatVersion;
    const std::size_t rotation_rank = per_head ? 3 : 2;
    const char* expected_rotation = per_head ? "[Hkv, d, d]" : "[d, d]";
    const char* expected_eigenvalues = per_head ? "[Hkv, d]" : "[d]";
    if (rotation.size() != rotation_rank) {
      fail(prefix + "rotation has shape " + shape_string(rotation) + ", expected " + expected_rotation);
    }
    const std::int64_t rows = rotation[rotation_rank - 2];
    const std::int64_t columns = rotation[rotation_rank - 1];
    if (rows != columns) fail(prefix + "rotation has shape " + shape_string(rotation) + ", expected square");
    const std::int64_t heads = per_head ? rotation[0] : 1;
    if (rows <= 0 || heads <= 0 || rows > INT_MAX || heads > INT_MAX) {
      fail(prefix + "rotation has shape " + shape_string(rotation) + ", expected positive sizes");
    }
    const std::vector<std::int64_t> expected = per_head ? std::vector<std::int64_t>{heads, rows} : std::vector<std::int64_t>{rows};
    if (eigenvalues != expected) {
      fail(prefix + "eigenvalues have shape " + shape_string(eigenvalues) + ", expected " + expected_eigenvalues + " = " +
           shape_string(expected));
    }
    layer->num_heads = int(heads);
    layer->head_dim = int(rows);
  }

  // Every layer has the geometry of the first one read.
  void check_geometry(const std::string& prefix, const LayerRotation& layer) {
    if (first_layer_id_ < 0) {
      first_layer_id_ = layer.layer_id;
      head_dim_ = layer.head_dim;
      num_heads_ = layer.num_heads;
      return;
    }
    const std::string other = " of layer " + std::to_string(first_layer_id_);
    if (layer.head_dim != head_dim_) {
      fail(prefix + "head_dim " + std::to_string(layer.head_dim) + " differs from the " + std::to_string(head_dim_) + other);
    }
    if (layer.num_heads != num_heads_) {
      fail(prefix + std::to_string(layer.num_heads) + " heads differ from the " + std::to_string(num_heads_) + other);
    }
  }

  std::vector<float> load_floats(const pickle::TensorRef& tensor, const std::string& what) const {
    if (tensor.dtype() != DType::kFloat32 && tensor.dtype() != DType::kFloat64) {
      fail(what + " has dtype " + dtype_name(tensor.dtype()) + ", expected float32 or float64");
    }
    const HostTensor host = archive_.load_tensor(tensor, what);
    std::vector<float> values(std::size_t(host.numel()));
    if (host.dtype == DType::kFloat32) {
      std::memcpy(values.data(), host.bytes.data(), host.bytes.size());
    } else {
      for (std::size_t i = 0; i < values.size(); ++i) values[i] = float(host.element_as_double(std::int64_t(i)));
    }
    return values;
  }

  TorchArchive archive_;
  int first_layer_id_ = -1;
  int head_dim_ = 0;
  int num_heads_ = 0;
};

// ---------------------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------------------

void check_writable(const std::string& path, const RotationSet& rotations) {
  auto fail = [&](const std::string& problem) { throw std::invalid_argument(path + ": " + problem); };
  const int version = rotations.format_version;
  if (version != rotation_format::kLayerFormatVersion && version != rotation_format::kPerKvHeadFormatVersion) {
    fail("format_version " + std::to_string(version) + " is not supported");
  }
  if (rotations.source_grouping != expected_grouping(version)) {
    fail("source_grouping '" + rotations.source_grouping + "' does not match format_version " + std::to_string(version));
  }
  if (rotations.layers.empty()) fail("no layers");
  const LayerRotation& first = rotations.layers.front();
  for (std::size_t i = 0; i < rotations.layers.size(); ++i) {
    const LayerRotation& layer = rotations.layers[i];
    const std::string prefix = layer_prefix(layer.layer_id);
    if (layer.layer_id < 0) fail(prefix + "negative layer id");
    if (i > 0 && layer.layer_id <= rotations.layers[i - 1].layer_id) fail(prefix + "layers are not in ascending order");
    if (layer.head_dim <= 0 || layer.num_heads <= 0) fail(prefix + "head_dim and num_heads must be positive");
    if (version == rotation_format::kLayerFormatVersion && layer.num_heads != 1) fail(prefix + "format 1 has one rotation per layer");
    if (layer.head_dim != first.head_dim || layer.num_heads != first.num_heads) fail(prefix + "geometry differs from the first layer");
    const std::size_t d = std::size_t(layer.head_dim);
    const std::size_t heads = std::size_t(layer.num_heads);
    if (layer.rotation.size() != heads * d * d) {
      fail(prefix + "rotation has " + std::to_string(layer.rotation.size()) + " values, expected " + std::to_string(heads * d * d));
    }
    if (layer.eigenvalues.size() != heads * d) {
      fail(prefix + "eigenvalues have " + std::to_string(layer.eigenvalues.size()) + " values, expected " + std::to_string(heads * d));
    }
  }
}

// An fp32 contiguous tensor over storage `key` (its data goes into the archive separately).
ValuePtr float_tensor(const std::string& key, std::vector<std::int64_t> shape, std::size_t numel) {
  pickle::TensorRef tensor;
  tensor.storage.dtype = DType::kFloat32;
  tensor.storage.key = key;
  tensor.storage.numel = std::int64_t(numel);
  tensor.stride = pickle::TensorRef::contiguous_stride(shape);
  tensor.shape = std::move(shape);
  return pickle::make_tensor(std::move(tensor));
}

}  // namespace

RotationSet read_rotation_set(const std::string& path) { return RotationSetReader(path).read(); }

void write_rotation_set(const std::string& path, const RotationSet& rotations) {
  check_writable(path, rotations);
  const bool per_head = rotations.format_version == rotation_format::kPerKvHeadFormatVersion;

  // The dict the reference builds, in its key order; storages numbered rotation0, eig0, rotation1, ...
  const ValuePtr root = pickle::make_dict();
  root->add(pickle::make_string("format_version"), pickle::make_int(rotations.format_version));
  root->add(pickle::make_string("objective"), pickle::make_string(rotations.objective));
  root->add(pickle::make_string("source_grouping"), pickle::make_string(rotations.source_grouping));
  const ValuePtr layers = pickle::make_dict();
  root->add(pickle::make_string("layers"), layers);

  std::vector<TorchStorageData> storages;
  for (const LayerRotation& layer : rotations.layers) {
    const std::int64_t d = layer.head_dim;
    const std::int64_t heads = layer.num_heads;
    const std::string rotation_key = std::to_string(storages.size());
    storages.push_back({rotation_key, layer.rotation.data(), layer.rotation.size() * sizeof(float)});
    const std::string eigenvalues_key = std::to_string(storages.size());
    storages.push_back({eigenvalues_key, layer.eigenvalues.data(), layer.eigenvalues.size() * sizeof(float)});

    const ValuePtr entry = pickle::make_dict();
    entry->add(pickle::make_string("layer_id"), pickle::make_int(layer.layer_id));
    entry->add(pickle::make_string("rotation"),
               float_tensor(rotation_key, per_head ? std::vector<std::int64_t>{heads, d, d} : std::vector<std::int64_t>{d, d},
                            layer.rotation.size()));
    entry->add(pickle::make_string("eigenvalues"),
               float_tensor(eigenvalues_key, per_head ? std::vector<std::int64_t>{heads, d} : std::vector<std::int64_t>{d},
                            layer.eigenvalues.size()));
    layers->add(pickle::make_int(layer.layer_id), entry);
  }
  write_torch_archive(path, pickle::pickle_protocol2(*root), storages);
}

}  // namespace oscar::io
