#include "calib/state_file.h"

#include <H5Cpp.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <regex>

#include "core/error.h"
#include "core/version.h"
#include "io/hdf5_dump.h"

namespace oscar::calib {

namespace {

namespace fs = std::filesystem;

const char* const kMatrixNames[] = {"query_outer_sum", "key_outer_sum", "value_outer_sum",
                                    "weighted_value_outer_sum", "weighting_query_covariance"};

/// The matrices of a head in the order of kMatrixNames (const or not, for writing and reading).
template <typename Head>
auto matrix_fields(Head& head) {
  return std::array{&head.query_outer_sum, &head.key_outer_sum, &head.value_outer_sum,
                    &head.weighted_value_outer_sum, &head.weighting_query_covariance};
}

template <typename T>
void write_scalar(H5::H5Object& object, const char* name, const H5::PredType& type, T value) {
  object.createAttribute(name, type, H5::DataSpace(H5S_SCALAR)).write(type, &value);
}

void write_string(H5::H5Object& object, const char* name, const std::string& value) {
  const H5::StrType type(H5::PredType::C_S1, value.empty() ? 1 : value.size());
  object.createAttribute(name, type, H5::DataSpace(H5S_SCALAR)).write(type, value.empty() ? std::string(" ") : value);
}

template <typename T>
T read_scalar(const H5::H5Object& object, const char* name, const H5::PredType& type) {
  T value{};
  object.openAttribute(name).read(type, &value);
  return value;
}

std::string read_string(const H5::H5Object& object, const char* name) {
  const H5::Attribute attribute = object.openAttribute(name);
  std::string value;
  attribute.read(attribute.getStrType(), value);
  return value;
}

void write_matrix(H5::Group& group, const char* name, const Matrix& matrix) {
  if (matrix.size() == 0) return;
  const hsize_t dims[2] = {hsize_t(matrix.rows()), hsize_t(matrix.cols())};
  // Eigen is column-major; the file is row-major. Store the transpose's memory so (i, j) stays (i, j).
  const Matrix row_major = matrix.transpose();
  group.createDataSet(name, H5::PredType::IEEE_F64LE, H5::DataSpace(2, dims))
      .write(row_major.data(), H5::PredType::NATIVE_DOUBLE);
}

Matrix read_matrix(const H5::Group& group, const char* name, int head_dim) {
  const H5::DataSet dataset = group.openDataSet(name);
  hsize_t dims[2] = {0, 0};
  const H5::DataSpace space = dataset.getSpace();
  if (space.getSimpleExtentNdims() != 2) throw InputError(std::string(name) + " is not a matrix");
  space.getSimpleExtentDims(dims);
  if (dims[0] != hsize_t(head_dim) || dims[1] != hsize_t(head_dim)) {
    throw InputError(std::string(name) + " is not " + std::to_string(head_dim) + "x" + std::to_string(head_dim));
  }
  Matrix transposed(head_dim, head_dim);
  dataset.read(transposed.data(), H5::PredType::NATIVE_DOUBLE);
  return transposed.transpose();
}

void write_chunks(H5::Group& group, const char* name, const std::set<int>& chunks) {
  const std::vector<std::int32_t> values(chunks.begin(), chunks.end());
  const hsize_t dims[1] = {values.size()};
  group.createDataSet(name, H5::PredType::STD_I32LE, H5::DataSpace(1, dims))
      .write(values.data(), H5::PredType::NATIVE_INT32);
}

std::set<int> read_chunks(const H5::Group& group, const char* name) {
  const H5::DataSet dataset = group.openDataSet(name);
  if (dataset.getSpace().getSimpleExtentNdims() != 1) throw InputError(std::string(name) + " is not 1-D");
  const hssize_t count = dataset.getSpace().getSimpleExtentNpoints();
  std::vector<std::int32_t> values(static_cast<std::size_t>(count));
  if (count > 0) dataset.read(values.data(), H5::PredType::NATIVE_INT32);
  return {values.begin(), values.end()};
}

void write_skipped(H5::Group& group, const std::set<TokenRef>& skipped) {
  std::vector<std::int64_t> pairs;
  for (const auto& [chunk, token] : skipped) {
    pairs.push_back(chunk);
    pairs.push_back(token);
  }
  const hsize_t dims[2] = {skipped.size(), 2};
  group.createDataSet("skipped_query_tokens", H5::PredType::STD_I64LE, H5::DataSpace(2, dims))
      .write(pairs.data(), H5::PredType::NATIVE_INT64);
}

std::set<TokenRef> read_skipped(const H5::Group& group) {
  const H5::DataSet dataset = group.openDataSet("skipped_query_tokens");
  std::vector<std::int64_t> pairs(static_cast<std::size_t>(dataset.getSpace().getSimpleExtentNpoints()));
  if (pairs.size() % 2) throw InputError("skipped_query_tokens is not [n, 2]");
  if (!pairs.empty()) dataset.read(pairs.data(), H5::PredType::NATIVE_INT64);
  std::set<TokenRef> skipped;
  for (std::size_t i = 0; i < pairs.size(); i += 2) skipped.insert({int(pairs[i]), pairs[i + 1]});
  return skipped;
}

void write_head(H5::Group& group, const HeadStatistics& head) {
  const auto fields = matrix_fields(head);
  for (std::size_t i = 0; i < fields.size(); ++i) write_matrix(group, kMatrixNames[i], *fields[i]);
  write_chunks(group, "first_pass_chunks", head.first_pass_chunks);
  write_chunks(group, "second_pass_chunks", head.second_pass_chunks);
  write_skipped(group, head.skipped_query_tokens);
  write_scalar(group, "query_tokens", H5::PredType::NATIVE_INT64, head.query_tokens);
  write_scalar(group, "key_value_tokens", H5::PredType::NATIVE_INT64, head.key_value_tokens);
  write_scalar(group, "weighted_tokens", H5::PredType::NATIVE_INT64, head.weighted_tokens);
  write_scalar(group, "skipped_tokens", H5::PredType::NATIVE_INT64, head.skipped_tokens);
  write_scalar(group, "weight_sum", H5::PredType::NATIVE_DOUBLE, head.weight_sum);
}

/// Which matrices a head must have, in the order of kMatrixNames: the sums its mask implies, and C̄_Q
/// once a second pass has run.
std::array<bool, 5> required_matrices(const StatisticsMask& mask, bool has_second_pass) {
  return {mask.query, mask.key_value, mask.key_value, mask.weighted_value, has_second_pass};
}

HeadStatistics read_head(const H5::Group& group, const StatisticsMask& mask, int head_dim) {
  HeadStatistics head;
  head.second_pass_chunks = read_chunks(group, "second_pass_chunks");
  const auto fields = matrix_fields(head);
  const auto required = required_matrices(mask, !head.second_pass_chunks.empty());
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (group.nameExists(kMatrixNames[i])) {
      *fields[i] = read_matrix(group, kMatrixNames[i], head_dim);
    } else if (required[i]) {
      throw InputError(std::string("missing ") + kMatrixNames[i]);
    }
  }
  head.first_pass_chunks = read_chunks(group, "first_pass_chunks");
  head.skipped_query_tokens = read_skipped(group);
  head.query_tokens = read_scalar<std::int64_t>(group, "query_tokens", H5::PredType::NATIVE_INT64);
  head.key_value_tokens = read_scalar<std::int64_t>(group, "key_value_tokens", H5::PredType::NATIVE_INT64);
  head.weighted_tokens = read_scalar<std::int64_t>(group, "weighted_tokens", H5::PredType::NATIVE_INT64);
  head.skipped_tokens = read_scalar<std::int64_t>(group, "skipped_tokens", H5::PredType::NATIVE_INT64);
  head.weight_sum = read_scalar<double>(group, "weight_sum", H5::PredType::NATIVE_DOUBLE);
  return head;
}

void write_layout(H5::H5File& file, const std::vector<DumpChunk>& layout) {
  std::vector<std::int64_t> rows;
  for (const DumpChunk& chunk : layout) rows.insert(rows.end(), {chunk.layer_id, chunk.chunk_id, chunk.tokens, chunk.sequences});
  const hsize_t dims[2] = {layout.size(), 4};
  file.createDataSet("dump_layout", H5::PredType::STD_I64LE, H5::DataSpace(2, dims))
      .write(rows.data(), H5::PredType::NATIVE_INT64);
}

std::vector<DumpChunk> read_layout(const H5::H5File& file) {
  const H5::DataSet dataset = file.openDataSet("dump_layout");
  const H5::DataSpace space = dataset.getSpace();
  hsize_t dims[2] = {0, 0};
  if (space.getSimpleExtentNdims() != 2 || (space.getSimpleExtentDims(dims), dims[1] != 4)) {
    throw InputError("dump_layout is not [n, 4]");
  }
  std::vector<std::int64_t> rows(static_cast<std::size_t>(dims[0] * 4));
  if (!rows.empty()) dataset.read(rows.data(), H5::PredType::NATIVE_INT64);
  std::vector<DumpChunk> layout;
  for (std::size_t i = 0; i < rows.size(); i += 4) {
    layout.push_back({int(rows[i]), int(rows[i + 1]), rows[i + 2], rows[i + 3]});
  }
  return layout;
}

void write_root(H5::H5File& file, const CalibrationState& state) {
  write_string(file, "format", state_format::kFormatName);
  write_scalar(file, "format_version", H5::PredType::NATIVE_INT, state_format::kFormatVersion);
  write_string(file, "tool_version", kVersion);
  write_string(file, "source", state.source);
  write_scalar(file, "num_q_heads", H5::PredType::NATIVE_INT, state.geometry.num_q_heads);
  write_scalar(file, "num_kv_heads", H5::PredType::NATIVE_INT, state.geometry.num_kv_heads);
  write_scalar(file, "head_dim", H5::PredType::NATIVE_INT, state.geometry.head_dim);
  write_scalar(file, "has_query", H5::PredType::NATIVE_INT, int(state.mask.query));
  write_scalar(file, "has_key_value", H5::PredType::NATIVE_INT, int(state.mask.key_value));
  write_scalar(file, "has_weighted_value", H5::PredType::NATIVE_INT, int(state.mask.weighted_value));
  write_layout(file, state.dump_layout);
}

void read_root(const H5::H5File& file, CalibrationState& state) {
  if (!file.attrExists("format") || read_string(file, "format") != state_format::kFormatName) {
    throw InputError("not an oscar calibration state file");
  }
  const int version = read_scalar<int>(file, "format_version", H5::PredType::NATIVE_INT);
  if (version != state_format::kFormatVersion) throw InputError("unsupported state format_version " + std::to_string(version));
  state.source = read_string(file, "source");
  state.geometry.num_q_heads = read_scalar<int>(file, "num_q_heads", H5::PredType::NATIVE_INT);
  state.geometry.num_kv_heads = read_scalar<int>(file, "num_kv_heads", H5::PredType::NATIVE_INT);
  state.geometry.head_dim = read_scalar<int>(file, "head_dim", H5::PredType::NATIVE_INT);
  const auto& g = state.geometry;
  if (g.num_kv_heads <= 0 || g.num_q_heads % g.num_kv_heads || g.head_dim <= 0 || g.head_dim > 65536) {
    throw InputError("invalid head geometry in state");
  }
  state.mask.query = read_scalar<int>(file, "has_query", H5::PredType::NATIVE_INT);
  state.mask.key_value = read_scalar<int>(file, "has_key_value", H5::PredType::NATIVE_INT);
  state.mask.weighted_value = read_scalar<int>(file, "has_weighted_value", H5::PredType::NATIVE_INT);
  state.dump_layout = read_layout(file);
}

}  // namespace

void save_state(const std::string& path, const CalibrationState& state) {
  const std::lock_guard<std::mutex> lock(io::hdf5_library_mutex());  // HDF5 is not thread-safe
  H5::Exception::dontPrint();
  const std::string temporary = path + ".tmp";
  try {
    H5::H5File file(temporary, H5F_ACC_TRUNC);
    write_root(file, state);
    for (const auto& [key, head] : state.heads) {
      const std::string layer = "layer_" + std::to_string(key.first);
      if (!file.nameExists(layer)) file.createGroup(layer);
      H5::Group group = file.createGroup(layer + "/kv_head_" + std::to_string(key.second));
      write_head(group, head);
    }
    file.close();
  } catch (const H5::Exception& error) {
    std::remove(temporary.c_str());
    throw InputError(path + ": cannot write state: " + error.getDetailMsg());
  }
  std::error_code rename_error;
  fs::rename(temporary, path, rename_error);
  if (rename_error) throw InputError(path + ": cannot write state: " + rename_error.message());
}

CalibrationState load_state(const std::string& path) {
  const std::lock_guard<std::mutex> lock(io::hdf5_library_mutex());  // HDF5 is not thread-safe
  H5::Exception::dontPrint();
  if (!fs::is_regular_file(path)) throw InputError(path + ": no such state file");
  CalibrationState state;
  try {
    if (!H5::H5File::isHdf5(path)) throw InputError("not an HDF5 file");
    H5::H5File file(path, H5F_ACC_RDONLY);
    read_root(file, state);
    static const std::regex layer_name("layer_(\\d+)");
    static const std::regex head_name("kv_head_(\\d+)");
    for (hsize_t i = 0; i < file.getNumObjs(); ++i) {
      const std::string layer = file.getObjnameByIdx(i);
      std::smatch layer_match;
      if (!std::regex_match(layer, layer_match, layer_name)) continue;
      const H5::Group layer_group = file.openGroup(layer);
      for (hsize_t j = 0; j < layer_group.getNumObjs(); ++j) {
        const std::string head = layer_group.getObjnameByIdx(j);
        std::smatch head_match;
        if (!std::regex_match(head, head_match, head_name)) continue;
        const long kv_head = std::stol(head_match[1]);
        if (kv_head >= state.geometry.num_kv_heads) throw InputError(layer + "/" + head + " beyond num_kv_heads");
        state.heads[{std::stoi(layer_match[1]), kv_head}] =
            read_head(layer_group.openGroup(head), state.mask, state.geometry.head_dim);
      }
    }
    state.require_chunks_in_layout();
  } catch (const H5::Exception& error) {
    throw InputError(path + ": malformed state file: " + error.getDetailMsg());
  } catch (const std::exception& error) {  // InputError from the checks, std::out_of_range from stol
    const std::string message = error.what();
    if (message.rfind(path, 0) == 0) throw;
    throw InputError(path + ": " + message);
  }
  return state;
}

}  // namespace oscar::calib
