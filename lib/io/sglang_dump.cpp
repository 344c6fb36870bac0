#include "io/sglang_dump.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <utility>

#include "core/error.h"
#include "io/torch_file.h"

namespace oscar::io {

namespace fs = std::filesystem;

namespace {

constexpr Projection kProjections[] = {Projection::kQuery, Projection::kKey, Projection::kValue};
constexpr const char* kSeqLensDir = "seq_lens";

/// "123" -> 123; anything else (empty, signs, letters, overflow) -> -1.
int parse_non_negative_int(const std::string& text) {
  if (text.empty() || text.size() > 9) return -1;
  if (!std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) return -1;
  return std::stoi(text);
}

bool is_float_dtype(DType dtype) {
  return dtype == DType::kBFloat16 || dtype == DType::kFloat16 || dtype == DType::kFloat32;
}

/// Layer ids of the `layer_<L>` directories directly under the dump; other entries are ignored because
/// dumpers may leave metadata files next to the layers.
std::set<int> list_layer_dirs(const std::string& dump) {
  std::set<int> layer_ids;
  for (const fs::directory_entry& entry : fs::directory_iterator(dump)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("layer_", 0) != 0 || !entry.is_directory()) continue;
    const int layer_id = parse_non_negative_int(name.substr(6));
    if (layer_id >= 0) layer_ids.insert(layer_id);
  }
  return layer_ids;
}

/// Chunk ids of the `<chunk>.pt` files in one projection directory. Anything else (but hidden files) is an
/// error: a stray file there usually means a broken copy, and silently skipping it would lose data.
std::set<int> list_chunk_files(const std::string& dir) {
  std::set<int> chunk_ids;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    const bool is_pt = name.size() > 3 && name.compare(name.size() - 3, 3, ".pt") == 0;
    const int chunk_id = is_pt ? parse_non_negative_int(name.substr(0, name.size() - 3)) : -1;
    if (chunk_id < 0 || !entry.is_regular_file()) {
      throw InputError(entry.path().string() + ": not a <chunk>.pt file (chunk files are named 0.pt, 1.pt, ...)");
    }
    if (!chunk_ids.insert(chunk_id).second) {
      throw InputError(entry.path().string() + ": duplicate chunk id " + std::to_string(chunk_id));
    }
  }
  return chunk_ids;
}

/// Human-readable "dtype [shape]" used in messages about a file's content.
std::string describe(DType dtype, const std::vector<std::int64_t>& shape) {
  return std::string(dtype_name(dtype)) + " " + shape_string(shape);
}

}  // namespace

SglangDump::SglangDump(std::string path, const DumpOpenOptions& options)
    : IndexedActivationDump(std::move(path)), options_(options) {
  // Trailing separators would double up in the file names of messages ("/d//layer_0").
  while (path_.size() > 1 && path_.back() == '/') path_.pop_back();
  try {
    if (!fs::is_directory(path_)) throw InputError(path_ + ": not a directory");
    scan_layers();
  } catch (const fs::filesystem_error& error) {
    // Permissions, races with a concurrent delete, ...: still one line that names the path.
    throw InputError(error.path1().string() + ": " + error.code().message());
  }
}

std::string SglangDump::chunk_file(int layer_id, int chunk_id, const std::string& sub) const {
  return path_ + "/layer_" + std::to_string(layer_id) + "/" + sub + "/" + std::to_string(chunk_id) + ".pt";
}

void SglangDump::scan_layers() {
  const std::set<int> found = list_layer_dirs(path_);
  if (found.empty()) throw InputError(path_ + ": no layer_<L> directories (not an SGLang activation dump)");
  const int last_layer = *found.rbegin();
  for (int layer_id = 0; layer_id <= last_layer; ++layer_id) {
    if (!found.count(layer_id)) throw InputError(path_ + ": missing layer_" + std::to_string(layer_id));
  }
  for (int layer_id = 0; layer_id <= last_layer; ++layer_id) {
    scan_layer(layer_id);
    layer_ids_.push_back(layer_id);
  }
}

void SglangDump::scan_layer(int layer_id) {
  const std::string layer_dir = path_ + "/layer_" + std::to_string(layer_id);
  std::map<Projection, std::set<int>> files;
  for (Projection projection : kProjections) {
    const std::string dir = layer_dir + "/" + projection_name(projection);
    if (!fs::is_directory(dir)) throw InputError(dir + ": missing directory (every layer needs q, k and v)");
    files[projection] = list_chunk_files(dir);
    if (!options_.include_chunk0) files[projection].erase(0);
  }

  // Every chunk must exist for all three projections: name the first file that is missing.
  std::set<int> all_chunks;
  for (const auto& [projection, chunk_ids] : files) all_chunks.insert(chunk_ids.begin(), chunk_ids.end());
  for (int chunk_id : all_chunks) {
    for (Projection projection : kProjections) {
      if (files[projection].count(chunk_id)) continue;
      Projection present = Projection::kQuery;
      for (Projection other : kProjections) {
        if (files[other].count(chunk_id)) present = other;
      }
      throw InputError(chunk_file(layer_id, chunk_id, projection_name(projection)) + ": missing (" +
                       projection_name(present) + " has chunk " + std::to_string(chunk_id) + ")");
    }
  }
  if (all_chunks.empty()) {
    throw InputError(layer_dir + "/q: no chunks" + (options_.include_chunk0 ? "" : " besides the warm-up chunk 0"));
  }

  LayerInfo& layer = layers_[layer_id];
  layer.chunk_ids.assign(all_chunks.begin(), all_chunks.end());  // std::set iterates in numeric order
  for (int chunk_id : layer.chunk_ids) {
    SglangChunk& chunk = layer.chunks[chunk_id];
    chunk.tokens = validate_chunk(layer_id, chunk_id);
    read_seq_lens(layer_id, chunk_id, chunk);
  }
}

std::vector<std::int64_t> SglangDump::heads_and_dim(const std::string& file,
                                                    const std::vector<std::int64_t>& shape) const {
  if (shape.size() == 3) {
    if (shape[0] < 0 || shape[1] <= 0 || shape[2] <= 0) {
      throw InputError(file + ": shape " + shape_string(shape) + " has no heads or a zero head_dim");
    }
    // A hint that contradicts the data means the caller has the wrong model in mind.
    if (options_.head_dim_hint > 0 && shape[2] != options_.head_dim_hint) {
      throw InputError(file + ": head_dim " + std::to_string(shape[2]) + " disagrees with head_dim_hint " +
                       std::to_string(options_.head_dim_hint));
    }
    return {shape[1], shape[2]};
  }
  if (shape.size() == 2) {
    // A flattened [T, H*d] tensor: only the caller knows d.
    const std::int64_t head_dim = options_.head_dim_hint;
    if (head_dim <= 0) {
      throw InputError(file + ": 2-D shape " + shape_string(shape) + " needs the head dimension (head_dim_hint)");
    }
    if (shape[0] < 0 || shape[1] <= 0 || shape[1] % head_dim != 0) {
      throw InputError(file + ": 2-D shape " + shape_string(shape) + " is not a whole number of heads of head_dim " +
                       std::to_string(head_dim));
    }
    return {shape[1] / head_dim, head_dim};
  }
  throw InputError(file + ": shape " + shape_string(shape) + " is not [T, H, d]");
}

void SglangDump::check_against_reference(Projection projection, const std::string& file,
                                         const std::vector<std::int64_t>& shape, DType dtype) {
  auto [it, first_seen] = reference_shapes_.try_emplace(projection, ReferenceShape{shape, file});
  const ReferenceShape& reference = it->second;
  if (!first_seen && heads_and_dim(file, shape) != heads_and_dim(reference.file, reference.shape)) {
    throw InputError(file + ": shape " + shape_string(shape) + " disagrees with " + shape_string(reference.shape) +
                     " of " + reference.file);
  }
  // One dtype for the whole dump: it is recorded as the dump's source dtype, and mixing means a mixed-up copy.
  if (dtype_file_.empty()) {
    dtype_ = dtype;
    dtype_file_ = file;
  } else if (dtype != dtype_) {
    throw InputError(file + ": dtype " + dtype_name(dtype) + " disagrees with " + dtype_name(dtype_) + " of " +
                     dtype_file_);
  }
}

std::int64_t SglangDump::validate_chunk(int layer_id, int chunk_id) {
  std::map<Projection, std::vector<std::int64_t>> heads_dim;
  std::map<Projection, std::string> files;
  std::int64_t tokens = -1;
  for (Projection projection : kProjections) {
    const std::string file = chunk_file(layer_id, chunk_id, projection_name(projection));
    const TensorHeader header = read_torch_tensor_header(file);
    if (!is_float_dtype(header.dtype)) {
      throw InputError(file + ": dtype " + dtype_name(header.dtype) + ", but q/k/v must be bfloat16, float16 or float32");
    }
    heads_dim[projection] = heads_and_dim(file, header.shape);
    check_against_reference(projection, file, header.shape, header.dtype);
    if (tokens >= 0 && header.shape[0] != tokens) {
      throw InputError(file + ": " + std::to_string(header.shape[0]) + " tokens, but " + files[Projection::kQuery] +
                       " has " + std::to_string(tokens));
    }
    tokens = header.shape[0];
    files[projection] = file;
  }

  // Cross-projection rules; after the first chunk they follow from the reference shapes, but checking every
  // chunk costs nothing and keeps the messages pointing at a concrete file.
  const auto& q = heads_dim[Projection::kQuery];
  const auto& k = heads_dim[Projection::kKey];
  const auto& v = heads_dim[Projection::kValue];
  if (v != k) {
    throw InputError(files[Projection::kValue] + ": " + std::to_string(v[0]) + " heads of dim " + std::to_string(v[1]) +
                     " disagree with " + std::to_string(k[0]) + " heads of dim " + std::to_string(k[1]) + " of " +
                     files[Projection::kKey]);
  }
  if (q[1] != k[1]) {
    throw InputError(files[Projection::kKey] + ": head_dim " + std::to_string(k[1]) + " disagrees with head_dim " +
                     std::to_string(q[1]) + " of " + files[Projection::kQuery]);
  }
  if (q[0] % k[0] != 0) {
    throw InputError(files[Projection::kQuery] + ": " + std::to_string(q[0]) + " query heads are not a multiple of the " +
                     std::to_string(k[0]) + " KV heads of " + files[Projection::kKey]);
  }
  geometry_ = DumpGeometry{int(q[0]), int(k[0]), int(q[1])};
  return tokens;
}

void SglangDump::read_seq_lens(int layer_id, int chunk_id, SglangChunk& chunk) const {
  // seq_lens are optional (older dumps lack them), per chunk as well; when present they must add up.
  const std::string file = chunk_file(layer_id, chunk_id, kSeqLensDir);
  if (!fs::exists(file)) return;
  const HostTensor tensor = read_torch_tensor(file);
  if (tensor.shape.size() != 1 || (tensor.dtype != DType::kInt32 && tensor.dtype != DType::kInt64)) {
    throw InputError(file + ": seq_lens must be a 1-D int32 tensor, got " + describe(tensor.dtype, tensor.shape));
  }
  std::int64_t total = 0;
  for (std::int64_t i = 0; i < tensor.numel(); ++i) {
    const auto length = std::int64_t(tensor.element_as_double(i));
    if (length < 0 || length > chunk.tokens) {
      throw InputError(file + ": sequence length " + std::to_string(length) + " out of range");
    }
    total += length;
    chunk.seq_lens.push_back(std::int32_t(length));
  }
  if (total != chunk.tokens) {
    throw InputError(file + ": seq_lens sum to " + std::to_string(total) + " but the chunk has " +
                     std::to_string(chunk.tokens) + " tokens");
  }
}

HostTensor SglangDump::read(int layer_id, int chunk_id, Projection projection) const {
  const SglangChunk& chunk = chunk_info(layer_id, chunk_id);
  const std::string file = chunk_file(layer_id, chunk_id, projection_name(projection));
  HostTensor tensor = read_torch_tensor(file);

  // The file may have been replaced since open(): hold it to what the header said then.
  const std::int64_t heads = projection == Projection::kQuery ? geometry_.num_q_heads : geometry_.num_kv_heads;
  const std::vector<std::int64_t> expected{chunk.tokens, heads, geometry_.head_dim};
  const bool shape_ok = (tensor.shape.size() == 2 || tensor.shape.size() == 3) && tensor.shape[0] == chunk.tokens &&
                        tensor.numel() == chunk.tokens * heads * geometry_.head_dim &&
                        (tensor.shape.size() == 2 || tensor.shape == expected);
  if (!shape_ok || tensor.dtype != dtype_) {
    throw InputError(file + ": holds " + describe(tensor.dtype, tensor.shape) + " but the dump was opened with " +
                     describe(dtype_, expected) + " (file changed since?)");
  }
  if (tensor.bytes.size() != tensor.nbytes()) {
    throw InputError(file + ": " + std::to_string(tensor.bytes.size()) + " data bytes, expected " +
                     std::to_string(tensor.nbytes()));
  }
  tensor.shape = expected;  // 2-D [T, H*d] dumps come back as [T, H, d] like every other
  return tensor;
}

}  // namespace oscar::io
