#include "model/safetensors_file.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/file_mapping.h"

namespace oscar::model {
namespace {

using nlohmann::json;

// A header larger than this is not a model's tensor directory (real ones are a few hundred KiB).
constexpr std::uint64_t kMaxHeaderBytes = std::uint64_t(100) << 20;

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw InputError(path + ": " + problem);
}

DType parse_dtype(const std::string& path, const std::string& name, const json& entry) {
  const auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) fail(path, "tensor " + name + " has no dtype");
  const std::string text = dtype->get<std::string>();
  if (text == "F32") return DType::kFloat32;
  if (text == "F16") return DType::kFloat16;
  if (text == "BF16") return DType::kBFloat16;
  fail(path, "tensor " + name + " has dtype " + text + "; supported: F32, F16, BF16");
}

/// Shape with an overflow-safe element count (extents bounded so numel * 8 cannot overflow).
std::vector<std::int64_t> parse_shape(const std::string& path, const std::string& name, const json& entry,
                                      std::uint64_t& numel) {
  const auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array()) fail(path, "tensor " + name + " has no shape");
  std::vector<std::int64_t> extents;
  numel = 1;
  for (const json& extent : *shape) {
    if (!extent.is_number_unsigned()) fail(path, "tensor " + name + " has a malformed shape " + shape->dump());
    const auto e = extent.get<std::uint64_t>();
    if (e != 0 && numel > (std::uint64_t(1) << 56) / e) fail(path, "tensor " + name + " is impossibly large");
    numel *= e;
    extents.push_back(std::int64_t(e));
  }
  return extents;
}

/// [begin, end) relative to the data section, checked against its size and the tensor's byte count.
std::pair<std::uint64_t, std::uint64_t> parse_offsets(const std::string& path, const std::string& name, const json& entry,
                                                      std::uint64_t expected_bytes, std::uint64_t data_size) {
  const auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 || !(*offsets)[0].is_number_unsigned() ||
      !(*offsets)[1].is_number_unsigned()) {
    fail(path, "tensor " + name + " has malformed data_offsets");
  }
  const auto begin = (*offsets)[0].get<std::uint64_t>();
  const auto end = (*offsets)[1].get<std::uint64_t>();
  if (begin > end || end > data_size) {
    fail(path, "tensor " + name + " data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                   "] lie outside the data section of " + std::to_string(data_size) + " bytes (truncated file?)");
  }
  if (end - begin != expected_bytes) {
    fail(path, "tensor " + name + " spans " + std::to_string(end - begin) + " bytes but its shape and dtype need " +
                   std::to_string(expected_bytes));
  }
  return {begin, end};
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const std::shared_ptr<const FileMapping> mapping = FileMapping::open(path);
  mapping_ = mapping;
  const std::size_t size = mapping->size();
  if (size < 8) fail(path, "truncated file (" + std::to_string(size) + " bytes, no header length)");
  const unsigned char* bytes = mapping->data();
  std::uint64_t header_size = 0;
  std::memcpy(&header_size, bytes, 8);  // little-endian, as the format and every supported host are
  if (header_size > size - 8 || header_size > kMaxHeaderBytes) {
    fail(path, "header of " + std::to_string(header_size) + " bytes does not fit in a file of " + std::to_string(size) +
                   " bytes (truncated, or not a safetensors file)");
  }
  json header;
  try {
    header = json::parse(bytes + 8, bytes + 8 + header_size);
  } catch (const json::exception& e) {
    fail(path, std::string("malformed JSON header (") + e.what() + ")");
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");

  const std::uint64_t data_start = 8 + header_size;
  const std::uint64_t data_size = size - data_start;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;
    if (!entry.is_object()) fail(path, "tensor " + name + " has a malformed entry");
    WeightTensor tensor;
    tensor.dtype = parse_dtype(path, name, entry);
    std::uint64_t numel = 0;
    tensor.shape = parse_shape(path, name, entry, numel);
    const auto range = parse_offsets(path, name, entry, numel * dtype_size(tensor.dtype), data_size);
    tensor.data = bytes + data_start + range.first;
    tensor.owner = mapping_;
    tensors_.emplace_back(name, std::move(tensor));
  }
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> names;
  for (const auto& entry : tensors_) names.push_back(entry.first);
  return names;
}

WeightTensor SafetensorsFile::tensor(const std::string& name) const {
  const auto found = std::find_if(tensors_.begin(), tensors_.end(), [&](const auto& entry) { return entry.first == name; });
  if (found == tensors_.end()) fail(path_, "missing tensor " + name);
  const WeightTensor& mapped = found->second;
  // The format does not promise element alignment (the header length is arbitrary); readers that reinterpret
  // the pointer as float* or wrap it in a tensor need it, so a misaligned tensor is copied once.
  if (reinterpret_cast<std::uintptr_t>(mapped.data) % dtype_size(mapped.dtype) == 0) return mapped;
  auto copy = std::make_shared<std::vector<std::uint64_t>>((mapped.nbytes() + 7) / 8);
  std::memcpy(copy->data(), mapped.data, mapped.nbytes());
  WeightTensor owned = mapped;
  owned.data = copy->data();
  owned.owner = copy;
  return owned;
}

}  // namespace oscar::model
