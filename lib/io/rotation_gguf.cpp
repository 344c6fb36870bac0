#include "io/rotation_gguf.h"

#include <cstring>

#include "core/error.h"
#include "core/version.h"

namespace oscar::io {

namespace rotation_gguf {
std::string tensor_name(int layer, char kind) {
  return "blk." + std::to_string(layer) + ".attn_" + std::string(1, kind) + "_rot.weight";
}
}  // namespace rotation_gguf

namespace {

std::string key(const char* name) { return std::string(rotation_gguf::kPrefix) + name; }

/// "qqt_r_h_pbr" -> "r_h_pbr"; "hadamard" stays.
std::string composition_of(const std::string& objective) {
  const size_t underscore = objective.find('_');
  return underscore == std::string::npos ? objective : objective.substr(underscore + 1);
}

/// Rᵀ per head, as the tensor stores it (the transpose is its own inverse, so this also reads it back).
std::vector<float> transpose_heads(const std::vector<float>& matrices, int heads, int d) {
  std::vector<float> out(matrices.size());
  for (int h = 0; h < heads; ++h) {
    const size_t base = size_t(h) * size_t(d) * size_t(d);
    for (int i = 0; i < d; ++i) {
      for (int j = 0; j < d; ++j) out[base + size_t(j) * size_t(d) + size_t(i)] = matrices[base + size_t(i) * size_t(d) + size_t(j)];
    }
  }
  return out;
}

std::vector<float> eigenvalues_of(const RotationSet& set) {
  std::vector<float> all;
  for (const LayerRotation& layer : set.layers) all.insert(all.end(), layer.eigenvalues.begin(), layer.eigenvalues.end());
  return all;
}

std::vector<std::uint8_t> float_bytes(const std::vector<float>& values) {
  std::vector<std::uint8_t> bytes(values.size() * sizeof(float));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

void add_tensors(GgufWriter& writer, const RotationSet& set, char kind) {
  for (const LayerRotation& layer : set.layers) {
    std::vector<std::uint64_t> ne = {std::uint64_t(layer.head_dim), std::uint64_t(layer.head_dim)};
    if (set.format_version == rotation_format::kPerKvHeadFormatVersion) ne.push_back(std::uint64_t(layer.num_heads));
    writer.add_tensor(rotation_gguf::tensor_name(layer.layer_id, kind), gguf_format::kGgmlF32, ne,
                      float_bytes(transpose_heads(layer.rotation, layer.num_heads, layer.head_dim)));
  }
}

RotationSet read_set(const GgufReader& reader, char kind, const std::string& objective, int format, int heads, int d,
                     const std::vector<std::int64_t>& layer_ids, const std::vector<float>& eigenvalues) {
  RotationSet set;
  set.format_version = format;
  set.objective = objective;
  set.source_grouping = format == rotation_format::kPerKvHeadFormatVersion ? rotation_format::kPerKvHeadGrouping
                                                                             : rotation_format::kLayerGrouping;
  const size_t per_layer = size_t(heads) * size_t(d);
  if (eigenvalues.size() != layer_ids.size() * per_layer) {
    throw InputError(reader.path() + ": oscar." + std::string(kind == 'k' ? "key" : "value") + "_eigenvalues hold " +
                     std::to_string(eigenvalues.size()) + " values, expected " + std::to_string(layer_ids.size() * per_layer));
  }
  for (size_t i = 0; i < layer_ids.size(); ++i) {
    const int layer_id = int(layer_ids[i]);
    const std::string name = rotation_gguf::tensor_name(layer_id, kind);
    const GgufTensorInfo* info = reader.find_tensor(name);
    if (!info) throw InputError(reader.path() + ": missing tensor " + name);
    std::vector<std::uint64_t> expected = {std::uint64_t(d), std::uint64_t(d)};
    if (format == rotation_format::kPerKvHeadFormatVersion) expected.push_back(std::uint64_t(heads));
    if (info->type != gguf_format::kGgmlF32 || info->ne != expected) {
      throw InputError(reader.path() + ": tensor " + name + " must be F32 of " + std::to_string(heads) + "x" +
                       std::to_string(d) + "x" + std::to_string(d));
    }
    const GgufBytes bytes = reader.tensor_data(*info);
    std::vector<float> stored(bytes.size / sizeof(float));
    std::memcpy(stored.data(), bytes.data, bytes.size);
    LayerRotation layer;
    layer.layer_id = layer_id;
    layer.num_heads = heads;
    layer.head_dim = d;
    layer.rotation = transpose_heads(stored, heads, d);
    layer.eigenvalues.assign(eigenvalues.begin() + std::ptrdiff_t(i * per_layer), eigenvalues.begin() + std::ptrdiff_t((i + 1) * per_layer));
    set.layers.push_back(std::move(layer));
  }
  return set;
}

/// The value of `<arch>.<suffix>` in a base model, or -1.
std::int64_t architecture_int(const GgufReader& reader, const std::string& suffix) {
  const GgufValue* architecture = reader.find("general.architecture");
  if (!architecture || architecture->type != GgufType::kString) return -1;
  const GgufValue* value = reader.find(architecture->text + "." + suffix);
  return value && value->is_integer() ? value->as_int64(reader.path()) : -1;
}

void check_against_model(const GgufReader& base, const RotationPair& pair) {
  // The port rotates every layer: the set must hold exactly layers 0 .. block_count−1.
  const std::int64_t blocks = architecture_int(base, "block_count");
  for (size_t i = 0; i < pair.key.layers.size(); ++i) {
    const int layer = pair.key.layers[i].layer_id;
    if (blocks >= 0 && (layer >= blocks || layer != int(i))) {
      throw InputError(base.path() + ": the rotations have layer " + std::to_string(layer) + " at position " + std::to_string(i) +
                       ", the model needs layers 0.." + std::to_string(blocks - 1));
    }
  }
  if (blocks >= 0 && std::int64_t(pair.key.layers.size()) != blocks) {
    throw InputError(base.path() + ": the rotations cover " + std::to_string(pair.key.layers.size()) + " layers, the model has " +
                     std::to_string(blocks));
  }
  const std::int64_t kv_heads = architecture_int(base, "attention.head_count_kv");
  const int rotation_heads = pair.key.layers.front().num_heads;
  if (pair.key.format_version == rotation_format::kPerKvHeadFormatVersion && kv_heads > 0 && rotation_heads != kv_heads) {
    throw InputError(base.path() + ": " + std::to_string(rotation_heads) + " per-KV-head rotations per layer, the model has " +
                     std::to_string(kv_heads) + " KV heads");
  }
  std::int64_t head_dim = architecture_int(base, "attention.key_length");
  const std::int64_t embedding = architecture_int(base, "embedding_length"), heads = architecture_int(base, "attention.head_count");
  if (head_dim < 0 && embedding > 0 && heads > 0) head_dim = embedding / heads;
  const int d = pair.key.layers.empty() ? 0 : pair.key.layers.front().head_dim;
  if (head_dim > 0 && head_dim != d) {
    throw InputError(base.path() + ": head size " + std::to_string(head_dim) + ", the rotations are " + std::to_string(d) + "x" + std::to_string(d));
  }
}

}  // namespace

void check_rotation_pair(const RotationPair& pair, const std::string& what) {
  const RotationSet &k = pair.key, &v = pair.value;
  if (k.layers.empty()) throw InputError(what + ": no layers");
  if (k.format_version != v.format_version || k.layers.size() != v.layers.size()) {
    throw InputError(what + ": key and value rotations differ in format or layer count");
  }
  for (size_t i = 0; i < k.layers.size(); ++i) {
    const LayerRotation &a = k.layers[i], &b = v.layers[i];
    if (a.layer_id != b.layer_id || a.num_heads != b.num_heads || a.head_dim != b.head_dim ||
        a.head_dim != k.layers.front().head_dim || a.num_heads != k.layers.front().num_heads) {
      throw InputError(what + ": key and value rotations differ at layer " + std::to_string(a.layer_id));
    }
  }
}

void add_rotations(GgufWriter& writer, const RotationPair& pair, const RotationProvenance& provenance) {
  check_rotation_pair(pair, "rotations");
  const LayerRotation& first = pair.key.layers.front();
  std::vector<std::int32_t> layer_ids;
  for (const LayerRotation& layer : pair.key.layers) layer_ids.push_back(layer.layer_id);
  writer.add_metadata(key("format_version"), GgufValue::uint32(rotation_gguf::kFormatVersion));
  writer.add_metadata(key("rotation_format"), GgufValue::uint32(std::uint32_t(pair.key.format_version)));
  writer.add_metadata(key("key_objective"), GgufValue::string(pair.key.objective));
  writer.add_metadata(key("value_objective"), GgufValue::string(pair.value.objective));
  writer.add_metadata(key("composition"), GgufValue::string(composition_of(pair.key.objective)));
  writer.add_metadata(key("granularity"), GgufValue::string(pair.key.source_grouping));
  writer.add_metadata(key("head_dim"), GgufValue::uint32(std::uint32_t(first.head_dim)));
  writer.add_metadata(key("rotation_heads"), GgufValue::uint32(std::uint32_t(first.num_heads)));
  writer.add_metadata(key("layer_ids"), GgufValue::int32_array(layer_ids));
  writer.add_metadata(key("key_eigenvalues"), GgufValue::float32_array(eigenvalues_of(pair.key)));
  writer.add_metadata(key("value_eigenvalues"), GgufValue::float32_array(eigenvalues_of(pair.value)));
  writer.add_metadata(key("k_clip"), GgufValue::float32(float(provenance.key_clip)));
  writer.add_metadata(key("v_clip"), GgufValue::float32(float(provenance.value_clip)));
  writer.add_metadata(key("calibration_tag"), GgufValue::string(provenance.calibration_tag));
  writer.add_metadata(key("tool_version"), GgufValue::string(kVersion));
  add_tensors(writer, pair.key, 'k');
  add_tensors(writer, pair.value, 'v');
}

void write_rotation_gguf(const std::string& path, const RotationPair& pair, const RotationProvenance& provenance) {
  GgufWriter writer;
  writer.add_metadata("general.architecture", GgufValue::string(rotation_gguf::kStandaloneArchitecture));
  writer.add_metadata("general.name", GgufValue::string("OSCAR rotations " + provenance.calibration_tag));
  add_rotations(writer, pair, provenance);
  writer.write(path);
}

void bake_rotation_gguf(const std::string& base, const RotationPair& pair, const RotationProvenance& provenance,
                        const std::string& out) {
  const GgufReader reader(base);
  if (has_rotation_gguf_metadata(reader)) throw InputError(base + ": already holds oscar.* rotations");
  check_against_model(reader, pair);
  GgufWriter writer;
  for (const GgufKeyValue& entry : reader.metadata()) writer.add_metadata(entry.key, entry.value);
  for (const GgufTensorInfo& tensor : reader.tensors()) {
    if (tensor.name.find("_rot.weight") != std::string::npos && tensor.name.rfind("blk.", 0) == 0) {
      throw InputError(base + ": already holds rotation tensor " + tensor.name);
    }
    const GgufBytes bytes = reader.tensor_data(tensor);
    writer.add_tensor_view(tensor.name, tensor.type, tensor.ne, bytes.data, bytes.size);
  }
  add_rotations(writer, pair, provenance);
  writer.write(out);
}

bool has_rotation_gguf_metadata(const GgufReader& reader) { return reader.find(key("format_version")) != nullptr; }

RotationPair read_rotation_gguf(const std::string& path, RotationProvenance* provenance) {
  const GgufReader reader(path);
  if (!has_rotation_gguf_metadata(reader)) throw InputError(path + ": no oscar.* rotations in this GGUF");
  const std::uint64_t version = reader.get_uint64(key("format_version"));
  if (version != rotation_gguf::kFormatVersion) throw InputError(path + ": oscar.format_version " + std::to_string(version) + " is not supported");
  const int format = int(reader.get_int64(key("rotation_format")));
  if (format != rotation_format::kLayerFormatVersion && format != rotation_format::kPerKvHeadFormatVersion) {
    throw InputError(path + ": oscar.rotation_format " + std::to_string(format) + " is neither 1 nor 2");
  }
  const int d = int(reader.get_int64(key("head_dim"))), heads = int(reader.get_int64(key("rotation_heads")));
  if (d <= 0 || d > 65536 || heads <= 0 || heads > 65536 || (format == 1 && heads != 1)) {
    throw InputError(path + ": impossible oscar.head_dim / oscar.rotation_heads");
  }
  const std::vector<std::int64_t> layer_ids = reader.get_int64_array(key("layer_ids"));
  RotationPair pair;
  pair.key = read_set(reader, 'k', reader.get_string(key("key_objective")), format, heads, d, layer_ids,
                      reader.get_float_array(key("key_eigenvalues")));
  pair.value = read_set(reader, 'v', reader.get_string(key("value_objective")), format, heads, d, layer_ids,
                        reader.get_float_array(key("value_eigenvalues")));
  if (provenance) {
    provenance->calibration_tag = reader.get_string(key("calibration_tag"));
    provenance->key_clip = reader.get_double(key("k_clip"));
    provenance->value_clip = reader.get_double(key("v_clip"));
  }
  return pair;
}

}  // namespace oscar::io
