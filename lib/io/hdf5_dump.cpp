#include "io/hdf5_dump.h"

#include <H5Cpp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <sstream>
#include <system_error>
#include <utility>

#include "core/error.h"
#include "core/version.h"

namespace oscar::io {

namespace fs = std::filesystem;

namespace {

constexpr Projection kProjections[] = {Projection::kQuery, Projection::kKey, Projection::kValue};
constexpr std::size_t kTargetChunkBytes = 1 << 20;  // fits HDF5's default 1 MiB per-dataset chunk cache
constexpr hsize_t kMaxChunkRows = 256;

/// HDF5 prints its error stack to stderr by default; we turn every failure into one InputError line instead.
void silence_hdf5_errors() {
  static const bool silenced = [] {
    H5::Exception::dontPrint();
    return true;
  }();
  (void)silenced;
}

std::string describe(const H5::Exception& error) {
  std::string where = error.getFuncName();
  std::string detail = error.getDetailMsg();
  return where.empty() ? detail : where + ": " + detail;
}

/// IEEE binary16 exactly as h5py defines it, so h5py reads the datasets as numpy float16.
H5::FloatType float16_type() {
  H5::FloatType type(H5::PredType::IEEE_F32LE);
  type.setFields(15, 10, 5, 0, 10);
  type.setSize(2);
  type.setEbias(15);
  return type;
}

std::string layer_group_name(int layer_id) { return "layer_" + std::to_string(layer_id); }

int projection_index(Projection projection) { return int(projection); }

std::int64_t projection_heads(const DumpGeometry& geometry, Projection projection) {
  return projection == Projection::kQuery ? geometry.num_q_heads : geometry.num_kv_heads;
}

std::string chunk_label(int layer_id, int chunk_id) {
  return "layer " + std::to_string(layer_id) + " chunk " + std::to_string(chunk_id);
}

std::string format_value(double value) {
  std::ostringstream text;
  text << value;
  return text.str();
}

// ---- attributes -------------------------------------------------------------------------------------------

void write_string_attribute(H5::H5Object& where, const char* name, const std::string& value) {
  H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
  type.setCset(H5T_CSET_UTF8);
  where.createAttribute(name, type, H5::DataSpace(H5S_SCALAR)).write(type, value);
}

void write_int_attribute(H5::H5Object& where, const char* name, std::int32_t value) {
  where.createAttribute(name, H5::PredType::STD_I32LE, H5::DataSpace(H5S_SCALAR))
      .write(H5::PredType::NATIVE_INT32, &value);
}

void write_int64_array_attribute(H5::H5Object& where, const char* name, const std::vector<std::int64_t>& values) {
  const hsize_t size = values.size();
  where.createAttribute(name, H5::PredType::STD_I64LE, H5::DataSpace(1, &size))
      .write(H5::PredType::NATIVE_INT64, values.data());
}

/// Reader side: every attribute problem names the file and the attribute.
class AttributeReader {
 public:
  AttributeReader(const std::string& path, const H5::H5File& file) : path_(path), file_(file) {}

  bool has(const char* name) const { return file_.attrExists(name); }

  H5::Attribute open(const char* name) const {
    if (!has(name)) throw InputError(path_ + ": missing root attribute '" + name + "' (not an oscar activation dump?)");
    return file_.openAttribute(name);
  }

  std::string string(const char* name) const {
    const H5::Attribute attribute = open(name);
    if (attribute.getTypeClass() != H5T_STRING) throw InputError(path_ + ": attribute '" + name + "' is not a string");
    std::string value;
    attribute.read(attribute.getDataType(), value);
    // Fixed-length strings may carry NUL padding.
    value.erase(std::find(value.begin(), value.end(), '\0'), value.end());
    return value;
  }

  std::vector<std::int64_t> integers(const char* name) const {
    const H5::Attribute attribute = open(name);
    if (attribute.getTypeClass() != H5T_INTEGER) throw InputError(path_ + ": attribute '" + name + "' is not an integer");
    std::vector<std::int64_t> values(std::size_t(attribute.getSpace().getSimpleExtentNpoints()));
    if (!values.empty()) attribute.read(H5::PredType::NATIVE_INT64, values.data());
    return values;
  }

  std::int64_t integer(const char* name) const {
    const std::vector<std::int64_t> values = integers(name);
    if (values.size() != 1) throw InputError(path_ + ": attribute '" + name + "' is not a single integer");
    return values[0];
  }

  /// An int attribute that must be positive and fit an int (counts and dimensions).
  int positive_int(const char* name) const {
    const std::int64_t value = integer(name);
    if (value <= 0 || value > (1 << 30)) {
      throw InputError(path_ + ": attribute '" + name + "' = " + std::to_string(value) + " is out of range");
    }
    return int(value);
  }

 private:
  const std::string& path_;
  const H5::H5File& file_;
};

// ---- float16 conversion -----------------------------------------------------------------------------------

/// Converts a float tensor to raw float16 bits. Non-float16 inputs are rounded to nearest; a magnitude above
/// the float16 maximum is refused rather than stored as infinity, which would poison the covariances.
std::vector<std::uint16_t> to_float16(const HostTensor& tensor, const std::string& what) {
  std::vector<std::uint16_t> halves(std::size_t(tensor.numel()));
  if (tensor.dtype == DType::kFloat16) {
    std::memcpy(halves.data(), tensor.bytes.data(), halves.size() * sizeof(std::uint16_t));
    return halves;
  }
  if (tensor.dtype != DType::kBFloat16 && tensor.dtype != DType::kFloat32 && tensor.dtype != DType::kFloat64) {
    throw InputError(what + ": dtype " + dtype_name(tensor.dtype) + " is not a float type");
  }
  constexpr std::int64_t kBlock = 4096;
  double block[kBlock];
  for (std::int64_t first = 0; first < tensor.numel(); first += kBlock) {
    const std::int64_t count = std::min(kBlock, tensor.numel() - first);
    tensor.copy_to_double(first, count, block);
    for (std::int64_t i = 0; i < count; ++i) {
      const double value = block[i];
      if (std::fabs(value) > hdf5_format::kFloat16Max) {  // false for NaN: NaN is passed on for the calibrator
        throw InputError(what + ": value " + format_value(value) + " at element " + std::to_string(first + i) +
                         " overflows float16 (|x| > 65504)");
      }
      halves[std::size_t(first + i)] = float_to_float16(float(value));
    }
  }
  return halves;
}

// ---- integer datasets -------------------------------------------------------------------------------------

void write_vector_dataset(H5::Group& group, const char* name, const H5::PredType& file_type,
                          const H5::PredType& memory_type, const void* data, hsize_t size) {
  const H5::DataSpace space(1, &size);
  H5::DataSet dataset = group.createDataSet(name, file_type, space);
  if (size > 0) dataset.write(data, memory_type);
}

}  // namespace

std::mutex& hdf5_library_mutex() {
  static std::mutex mutex;
  return mutex;
}

// ============================================ writer ========================================================

struct Hdf5DumpWriter::State {
  struct Layer {
    explicit Layer(H5::Group layer_group) : group(std::move(layer_group)) {}
    H5::Group group;
    std::array<H5::DataSet, 3> datasets;          ///< q, k, v
    std::vector<std::int32_t> chunk_ids;
    std::vector<std::int64_t> chunk_offsets{0};
    std::vector<std::int32_t> seq_lens;
    std::vector<std::int64_t> seq_lens_offsets{0};
  };

  std::string temp_path;
  Hdf5DumpMetadata metadata;
  std::unique_ptr<H5::H5File> file;
  std::vector<Layer> layers;
  bool finished = false;

  void create_layer(int layer_id);
  void append_rows(Layer& layer, Projection projection, const std::vector<std::uint16_t>& halves, hsize_t rows);
  void write_index_and_attributes();
};

void Hdf5DumpWriter::State::create_layer(int layer_id) {
  Layer& layer = layers.emplace_back(file->createGroup(layer_group_name(layer_id)));
  const H5::FloatType half = float16_type();
  for (Projection projection : kProjections) {
    const hsize_t heads = hsize_t(projection_heads(metadata.geometry, projection));
    const hsize_t head_dim = hsize_t(metadata.geometry.head_dim);
    const hsize_t dims[3] = {0, heads, head_dim};
    const hsize_t max_dims[3] = {H5S_UNLIMITED, heads, head_dim};
    // Chunks of whole tokens, about 1 MiB: appends and per-chunk reads touch few HDF5 chunks.
    const hsize_t row_bytes = heads * head_dim * 2;
    const hsize_t chunk_dims[3] = {std::clamp<hsize_t>(kTargetChunkBytes / row_bytes, 1, kMaxChunkRows), heads,
                                   head_dim};
    H5::DSetCreatPropList properties;
    properties.setChunk(3, chunk_dims);
    layer.datasets[projection_index(projection)] =
        layer.group.createDataSet(projection_name(projection), half, H5::DataSpace(3, dims, max_dims), properties);
  }
}

void Hdf5DumpWriter::State::append_rows(Layer& layer, Projection projection, const std::vector<std::uint16_t>& halves,
                                        hsize_t rows) {
  if (rows == 0) return;  // an empty chunk still gets its (empty) range in chunk_offsets
  H5::DataSet& dataset = layer.datasets[projection_index(projection)];
  hsize_t dims[3];
  dataset.getSpace().getSimpleExtentDims(dims);
  const hsize_t start[3] = {dims[0], 0, 0};
  const hsize_t count[3] = {rows, dims[1], dims[2]};
  const hsize_t new_dims[3] = {dims[0] + rows, dims[1], dims[2]};
  dataset.extend(new_dims);
  H5::DataSpace file_space = dataset.getSpace();
  file_space.selectHyperslab(H5S_SELECT_SET, count, start);
  const H5::DataSpace memory_space(3, count);
  // Memory type == file type: HDF5 copies the bits and never runs its (broken in 1.10.8) float conversion.
  dataset.write(halves.data(), float16_type(), memory_space, file_space);
}

void Hdf5DumpWriter::State::write_index_and_attributes() {
  std::vector<std::int64_t> token_counts;
  for (std::size_t layer_id = 0; layer_id < layers.size(); ++layer_id) {
    Layer& layer = layers[layer_id];
    if (layer.chunk_ids.empty()) {
      throw InputError(temp_path + ": layer " + std::to_string(layer_id) + " has no chunks");
    }
    write_vector_dataset(layer.group, "chunk_offsets", H5::PredType::STD_I64LE, H5::PredType::NATIVE_INT64,
                         layer.chunk_offsets.data(), layer.chunk_offsets.size());
    write_vector_dataset(layer.group, "chunk_ids", H5::PredType::STD_I32LE, H5::PredType::NATIVE_INT32,
                         layer.chunk_ids.data(), layer.chunk_ids.size());
    write_vector_dataset(layer.group, "seq_lens", H5::PredType::STD_I32LE, H5::PredType::NATIVE_INT32,
                         layer.seq_lens.data(), layer.seq_lens.size());
    write_vector_dataset(layer.group, "seq_lens_offsets", H5::PredType::STD_I64LE, H5::PredType::NATIVE_INT64,
                         layer.seq_lens_offsets.data(), layer.seq_lens_offsets.size());
    token_counts.push_back(layer.chunk_offsets.back());
  }
  H5::H5File& root = *file;
  write_string_attribute(root, "format", hdf5_format::kFormatName);
  write_int_attribute(root, "format_version", hdf5_format::kFormatVersion);
  write_string_attribute(root, "model", metadata.model);
  write_int_attribute(root, "num_layers", metadata.num_layers);
  write_int_attribute(root, "num_q_heads", metadata.geometry.num_q_heads);
  write_int_attribute(root, "num_kv_heads", metadata.geometry.num_kv_heads);
  write_int_attribute(root, "head_dim", metadata.geometry.head_dim);
  write_int64_array_attribute(root, "token_count", token_counts);
  write_string_attribute(root, "tool_version", kVersion);
  write_string_attribute(root, "source_dtype", metadata.source_dtype);
}

Hdf5DumpWriter::Hdf5DumpWriter(std::string path, Hdf5DumpMetadata metadata)
    : path_(std::move(path)), state_(std::make_unique<State>()) {
  const DumpGeometry& geometry = metadata.geometry;
  if (metadata.num_layers <= 0 || geometry.num_q_heads <= 0 || geometry.num_kv_heads <= 0 || geometry.head_dim <= 0 ||
      geometry.num_q_heads % geometry.num_kv_heads != 0) {
    throw InputError(path_ + ": invalid dump geometry (layers " + std::to_string(metadata.num_layers) + ", Hq " +
                     std::to_string(geometry.num_q_heads) + ", Hkv " + std::to_string(geometry.num_kv_heads) + ", d " +
                     std::to_string(geometry.head_dim) + ")");
  }
  silence_hdf5_errors();
  state_->temp_path = path_ + ".tmp";
  state_->metadata = std::move(metadata);
  std::lock_guard<std::mutex> lock(hdf5_library_mutex());
  try {
    state_->file = std::make_unique<H5::H5File>(state_->temp_path, H5F_ACC_TRUNC);
    for (int layer_id = 0; layer_id < state_->metadata.num_layers; ++layer_id) state_->create_layer(layer_id);
  } catch (const H5::Exception& error) {
    state_->layers.clear();
    state_->file.reset();
    std::error_code ignored;
    fs::remove(state_->temp_path, ignored);
    throw InputError(state_->temp_path + ": cannot create HDF5 file (" + describe(error) + ")");
  }
}

Hdf5DumpWriter::~Hdf5DumpWriter() {
  if (!state_ || state_->finished) return;
  std::lock_guard<std::mutex> lock(hdf5_library_mutex());
  try {
    state_->layers.clear();  // close datasets and groups before the file
    state_->file.reset();
  } catch (const H5::Exception&) {
    // Nothing useful to do in a destructor; the temporary file goes either way.
  }
  std::error_code ignored;
  fs::remove(state_->temp_path, ignored);
}

void Hdf5DumpWriter::append_chunk(int layer_id, int chunk_id, const HostTensor& q, const HostTensor& k,
                                  const HostTensor& v, const std::vector<std::int32_t>& seq_lens) {
  if (state_->finished) throw std::logic_error("Hdf5DumpWriter::append_chunk after finish()");
  const std::string label = path_ + ": " + chunk_label(layer_id, chunk_id);
  if (layer_id < 0 || layer_id >= state_->metadata.num_layers) {
    throw InputError(label + ": layer out of range (the dump has " + std::to_string(state_->metadata.num_layers) +
                     " layers)");
  }
  State::Layer& layer = state_->layers[std::size_t(layer_id)];
  if (chunk_id < 0 || (!layer.chunk_ids.empty() && chunk_id <= layer.chunk_ids.back())) {
    throw InputError(label + ": chunk ids of a layer must ascend (last was " +
                     (layer.chunk_ids.empty() ? std::string("none") : std::to_string(layer.chunk_ids.back())) + ")");
  }

  const std::int64_t tokens = q.shape.empty() ? -1 : q.shape[0];
  const DumpGeometry& geometry = state_->metadata.geometry;
  const HostTensor* tensors[3] = {&q, &k, &v};
  std::array<std::vector<std::uint16_t>, 3> halves;
  for (Projection projection : kProjections) {
    const HostTensor& tensor = *tensors[projection_index(projection)];
    const std::vector<std::int64_t> expected{tokens, projection_heads(geometry, projection), geometry.head_dim};
    if (tokens < 0 || tensor.shape != expected || tensor.bytes.size() != tensor.nbytes()) {
      throw InputError(label + ": " + projection_name(projection) + " has shape " + shape_string(tensor.shape) +
                       ", expected " + shape_string(expected));
    }
    // Convert all three before writing any, so a refused chunk leaves the file as it was.
    halves[projection_index(projection)] = to_float16(tensor, label + " " + projection_name(projection));
  }
  std::int64_t seq_total = 0;
  for (std::int32_t length : seq_lens) seq_total += length;
  if (!seq_lens.empty() && seq_total != tokens) {
    throw InputError(label + ": seq_lens sum to " + std::to_string(seq_total) + " but the chunk has " +
                     std::to_string(tokens) + " tokens");
  }

  std::lock_guard<std::mutex> lock(hdf5_library_mutex());
  try {
    for (Projection projection : kProjections) {
      state_->append_rows(layer, projection, halves[projection_index(projection)], hsize_t(tokens));
    }
  } catch (const H5::Exception& error) {
    throw InputError(state_->temp_path + ": writing " + chunk_label(layer_id, chunk_id) + " failed (" +
                     describe(error) + ")");
  }
  layer.chunk_ids.push_back(chunk_id);
  layer.chunk_offsets.push_back(layer.chunk_offsets.back() + tokens);
  layer.seq_lens.insert(layer.seq_lens.end(), seq_lens.begin(), seq_lens.end());
  layer.seq_lens_offsets.push_back(std::int64_t(layer.seq_lens.size()));
}

void Hdf5DumpWriter::finish() {
  if (state_->finished) return;
  {
    std::lock_guard<std::mutex> lock(hdf5_library_mutex());
    try {
      state_->write_index_and_attributes();
      state_->layers.clear();
      state_->file->close();
      state_->file.reset();
    } catch (const H5::Exception& error) {
      throw InputError(state_->temp_path + ": finishing the HDF5 file failed (" + describe(error) + ")");
    }
  }
  std::error_code error;
  fs::rename(state_->temp_path, path_, error);
  if (error) throw InputError(path_ + ": cannot rename " + state_->temp_path + " into place: " + error.message());
  state_->finished = true;
}

// ============================================ reader ========================================================

struct Hdf5Dump::File {
  explicit File(const std::string& path) : file(path, H5F_ACC_RDONLY) {}
  H5::H5File file;
  std::map<int, std::array<H5::DataSet, 3>> datasets;  ///< per layer: q, k, v
};

namespace {

/// A 1-D integer dataset of a layer group, with its length checked when expected_size >= 0.
std::vector<std::int64_t> read_index_dataset(const std::string& where, const H5::Group& group, const char* name,
                                             std::int64_t expected_size) {
  if (!group.nameExists(name)) throw InputError(where + "/" + name + ": missing dataset");
  const H5::DataSet dataset = group.openDataSet(name);
  const H5::DataSpace space = dataset.getSpace();
  if (dataset.getTypeClass() != H5T_INTEGER || space.getSimpleExtentNdims() != 1) {
    throw InputError(where + "/" + name + ": not a 1-D integer dataset");
  }
  hsize_t size = 0;
  space.getSimpleExtentDims(&size);
  if (expected_size >= 0 && std::int64_t(size) != expected_size) {
    throw InputError(where + "/" + name + ": " + std::to_string(size) + " entries, expected " +
                     std::to_string(expected_size));
  }
  std::vector<std::int64_t> values(size);
  if (size > 0) dataset.read(values.data(), H5::PredType::NATIVE_INT64);
  return values;
}

/// Offsets into rows: start at 0, never decrease, end at the row count.
void check_offsets(const std::string& what, const std::vector<std::int64_t>& offsets, std::int64_t rows) {
  bool ok = !offsets.empty() && offsets.front() == 0 && offsets.back() == rows;
  for (std::size_t i = 1; ok && i < offsets.size(); ++i) ok = offsets[i] >= offsets[i - 1];
  if (!ok) throw InputError(what + ": offsets must rise from 0 to " + std::to_string(rows));
}

}  // namespace

Hdf5Dump::Hdf5Dump(std::string path, const DumpOpenOptions& options)
    : IndexedActivationDump(std::move(path)), options_(options) {
  silence_hdf5_errors();
  if (!fs::is_regular_file(path_)) throw InputError(path_ + ": no such file");
  std::lock_guard<std::mutex> lock(hdf5_library_mutex());
  try {
    if (!H5::H5File::isHdf5(path_)) throw InputError(path_ + ": not an HDF5 file");
    file_ = std::make_unique<File>(path_);
    load();
  } catch (const H5::Exception& error) {
    file_.reset();  // HDF5 objects must be closed while the lock is held
    throw InputError(path_ + ": unreadable HDF5 dump (" + describe(error) + ")");
  } catch (...) {
    file_.reset();
    throw;
  }
}

Hdf5Dump::~Hdf5Dump() {
  std::lock_guard<std::mutex> lock(hdf5_library_mutex());
  file_.reset();
}

void Hdf5Dump::load() {
  const AttributeReader attributes(path_, file_->file);
  const std::string format = attributes.string("format");
  if (format != hdf5_format::kFormatName) {
    throw InputError(path_ + ": format is '" + format + "', expected '" + hdf5_format::kFormatName + "'");
  }
  const std::int64_t version = attributes.integer("format_version");
  if (version != hdf5_format::kFormatVersion) {
    throw InputError(path_ + ": unsupported format_version " + std::to_string(version) + " (this tool reads " +
                     std::to_string(hdf5_format::kFormatVersion) + ")");
  }
  const int num_layers = attributes.positive_int("num_layers");
  geometry_.num_q_heads = attributes.positive_int("num_q_heads");
  geometry_.num_kv_heads = attributes.positive_int("num_kv_heads");
  geometry_.head_dim = attributes.positive_int("head_dim");
  if (geometry_.num_q_heads % geometry_.num_kv_heads != 0) {
    throw InputError(path_ + ": num_q_heads " + std::to_string(geometry_.num_q_heads) + " is not a multiple of " +
                     "num_kv_heads " + std::to_string(geometry_.num_kv_heads));
  }
  token_counts_ = attributes.integers("token_count");
  if (token_counts_.size() != std::size_t(num_layers)) {
    throw InputError(path_ + ": attribute 'token_count' has " + std::to_string(token_counts_.size()) +
                     " entries, expected one per layer (" + std::to_string(num_layers) + ")");
  }
  if (attributes.has("model")) model_ = attributes.string("model");
  if (attributes.has("source_dtype")) source_dtype_ = attributes.string("source_dtype");

  for (int layer_id = 0; layer_id < num_layers; ++layer_id) {
    load_layer(layer_id);
    layer_ids_.push_back(layer_id);
  }
}

void Hdf5Dump::load_layer(int layer_id) {
  const std::string group_name = layer_group_name(layer_id);
  const std::string where = path_ + ": /" + group_name;
  if (!file_->file.nameExists(group_name)) throw InputError(path_ + ": missing group /" + group_name);
  const H5::Group group = file_->file.openGroup(group_name);

  const std::int64_t tokens = token_counts_[std::size_t(layer_id)];
  const H5::FloatType half = float16_type();
  std::array<H5::DataSet, 3>& datasets = file_->datasets[layer_id];
  for (Projection projection : kProjections) {
    const char* name = projection_name(projection);
    if (!group.nameExists(name)) throw InputError(where + "/" + name + ": missing dataset");
    H5::DataSet dataset = group.openDataSet(name);
    if (dataset.getTypeClass() != H5T_FLOAT || !(dataset.getFloatType() == half)) {
      throw InputError(where + "/" + name + ": not IEEE float16 data");
    }
    const H5::DataSpace space = dataset.getSpace();
    std::vector<std::int64_t> shape;
    if (space.getSimpleExtentNdims() == 3) {
      hsize_t dims[3];
      space.getSimpleExtentDims(dims);
      shape.assign(dims, dims + 3);
    }
    const std::vector<std::int64_t> expected{tokens, projection_heads(geometry_, projection), geometry_.head_dim};
    if (shape != expected) {
      throw InputError(where + "/" + name + ": shape " + shape_string(shape) + " disagrees with " +
                       shape_string(expected) + " (token_count and head attributes)");
    }
    datasets[projection_index(projection)] = dataset;
  }

  const std::vector<std::int64_t> chunk_ids = read_index_dataset(where, group, "chunk_ids", -1);
  const auto chunk_count = std::int64_t(chunk_ids.size());
  const std::vector<std::int64_t> offsets = read_index_dataset(where, group, "chunk_offsets", chunk_count + 1);
  check_offsets(where + "/chunk_offsets", offsets, tokens);
  const std::vector<std::int64_t> seq_lens = read_index_dataset(where, group, "seq_lens", -1);
  const std::vector<std::int64_t> seq_offsets =
      read_index_dataset(where, group, "seq_lens_offsets", chunk_count + 1);
  check_offsets(where + "/seq_lens_offsets", seq_offsets, std::int64_t(seq_lens.size()));

  LayerInfo& layer = layers_[layer_id];
  for (std::size_t i = 0; i < chunk_ids.size(); ++i) {
    const std::int64_t chunk_id = chunk_ids[i];
    if (chunk_id < 0 || chunk_id > (1 << 30) || (i > 0 && chunk_id <= chunk_ids[i - 1])) {
      throw InputError(where + "/chunk_ids: ids must be non-negative and ascending");
    }
    Hdf5Chunk chunk{offsets[i], offsets[i + 1] - offsets[i], {}};
    std::int64_t seq_total = 0;
    for (std::int64_t s = seq_offsets[i]; s < seq_offsets[i + 1]; ++s) {
      seq_total += seq_lens[std::size_t(s)];
      chunk.seq_lens.push_back(std::int32_t(seq_lens[std::size_t(s)]));
    }
    if (!chunk.seq_lens.empty() && seq_total != chunk.tokens) {
      throw InputError(where + "/seq_lens: chunk " + std::to_string(chunk_id) + " seq_lens sum to " +
                       std::to_string(seq_total) + " but the chunk has " + std::to_string(chunk.tokens) + " tokens");
    }
    if (chunk_id == 0 && !options_.include_chunk0) continue;
    layer.chunk_ids.push_back(int(chunk_id));
    layer.chunks.emplace(int(chunk_id), std::move(chunk));
  }
  if (layer.chunk_ids.empty()) {
    throw InputError(where + ": no chunks" + (options_.include_chunk0 ? "" : " besides the warm-up chunk 0"));
  }
}

HostTensor Hdf5Dump::read(int layer_id, int chunk_id, Projection projection) const {
  const Hdf5Chunk& chunk = chunk_info(layer_id, chunk_id);
  HostTensor tensor;
  tensor.dtype = DType::kFloat16;
  tensor.shape = {chunk.tokens, projection_heads(geometry_, projection), geometry_.head_dim};
  tensor.bytes.resize(tensor.nbytes());
  if (chunk.tokens == 0) return tensor;

  std::lock_guard<std::mutex> lock(hdf5_library_mutex());
  try {
    const H5::DataSet& dataset = file_->datasets.at(layer_id)[projection_index(projection)];
    const hsize_t start[3] = {hsize_t(chunk.first_token), 0, 0};
    const hsize_t count[3] = {hsize_t(tensor.shape[0]), hsize_t(tensor.shape[1]), hsize_t(tensor.shape[2])};
    H5::DataSpace file_space = dataset.getSpace();
    file_space.selectHyperslab(H5S_SELECT_SET, count, start);
    const H5::DataSpace memory_space(3, count);
    dataset.read(tensor.bytes.data(), float16_type(), memory_space, file_space);
  } catch (const H5::Exception& error) {
    throw InputError(path_ + ": reading /" + layer_group_name(layer_id) + "/" + projection_name(projection) +
                     " of chunk " + std::to_string(chunk_id) + " failed (" + describe(error) + ")");
  }
  return tensor;
}

}  // namespace oscar::io
