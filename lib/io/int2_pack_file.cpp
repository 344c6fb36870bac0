#include "io/int2_pack_file.h"

#include "core/error.h"
#include "io/tensor_dict.h"

namespace oscar::io {

namespace {

HostTensor byte_tensor(DType dtype, std::vector<std::int64_t> shape, const std::vector<std::uint8_t>& bytes) {
  HostTensor tensor;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.bytes = bytes;
  return tensor;
}

void check_tensor(const HostTensor& tensor, DType dtype, const std::vector<std::int64_t>& shape, const std::string& what) {
  if (tensor.dtype != dtype || tensor.shape != shape) {
    throw InputError(what + " is " + dtype_name(tensor.dtype) + " " + shape_string(tensor.shape) + ", expected " +
                     dtype_name(dtype) + " " + shape_string(shape));
  }
}

}  // namespace

void write_int2_pack(const std::string& path, const runtime::PackedRows& packed, const Int2PackInfo& info) {
  const auto& config = packed.config;
  const bool half = config.scale_type == runtime::ScaleType::kFloat16;
  const DType scale_dtype = half ? DType::kFloat16 : DType::kFloat32;
  const std::vector<std::int64_t> row_shape = {packed.tokens, packed.heads};
  TensorDict dict;
  dict.integers = {{"head_dim", config.head_dim}, {"group_size", config.group_size}, {"layer", info.layer}};
  dict.reals = {{"clip_ratio", config.clip_ratio}};
  dict.strings = {{"scale_type", half ? "float16" : "float32"},
                  {"encoding", config.encoding == runtime::Encoding::kLloydMax ? "lloyd_max" : "minmax"},
                  {"kind", info.kind},
                  {"rotation", info.rotation}};
  dict.tensors = {{"codes", byte_tensor(DType::kUInt8, {packed.tokens, packed.heads, config.packed_bytes()}, packed.codes)},
                  {"scales", byte_tensor(scale_dtype, {packed.tokens, packed.heads, config.groups()}, packed.scales)},
                  {"zeros", byte_tensor(scale_dtype, {packed.tokens, packed.heads, config.groups()}, packed.zeros)}};
  write_tensor_dict(path, dict);
}

runtime::PackedRows read_int2_pack(const std::string& path, Int2PackInfo* info) {
  const TensorDict dict = read_tensor_dict(path);
  runtime::PackedRows packed;
  auto& config = packed.config;
  config.head_dim = int(dict.integer("head_dim", path));
  config.group_size = int(dict.integer("group_size", path));
  config.clip_ratio = dict.real("clip_ratio", path);
  const std::string scale_type = dict.string("scale_type", path);
  if (scale_type != "float32" && scale_type != "float16") throw InputError(path + ": unknown scale_type " + scale_type);
  config.scale_type = scale_type == "float16" ? runtime::ScaleType::kFloat16 : runtime::ScaleType::kFloat32;
  config.encoding = dict.string("encoding", path) == "lloyd_max" ? runtime::Encoding::kLloydMax : runtime::Encoding::kMinMax;
  try {
    runtime::validate(config);
  } catch (const std::invalid_argument& error) {
    throw InputError(path + ": " + error.what());
  }
  const HostTensor& codes = dict.tensor("codes", path);
  if (codes.shape.size() != 3) throw InputError(path + ": codes must be [T, H, d/4]");
  packed.tokens = codes.shape[0];
  packed.heads = int(codes.shape[1]);
  check_tensor(codes, DType::kUInt8, {packed.tokens, packed.heads, config.packed_bytes()}, path + ": codes");
  const DType scale_dtype = config.scale_type == runtime::ScaleType::kFloat16 ? DType::kFloat16 : DType::kFloat32;
  check_tensor(dict.tensor("scales", path), scale_dtype, {packed.tokens, packed.heads, config.groups()}, path + ": scales");
  check_tensor(dict.tensor("zeros", path), scale_dtype, {packed.tokens, packed.heads, config.groups()}, path + ": zeros");
  packed.codes = codes.bytes;
  packed.scales = dict.tensor("scales", path).bytes;
  packed.zeros = dict.tensor("zeros", path).bytes;
  if (info) *info = {dict.string("kind", path), int(dict.integer("layer", path)), dict.string("rotation", path)};
  return packed;
}

}  // namespace oscar::io
