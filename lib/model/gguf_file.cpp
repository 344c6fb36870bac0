#include "model/gguf_file.h"

#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <unordered_map>

#include "core/dtype.h"
#include "core/error.h"
#include "model/file_mapping.h"

namespace oscar::model {
namespace {

constexpr std::uint32_t kDefaultAlignment = 32;
// ggml's GGML_MAX_DIMS: a tensor with more dimensions cannot have come from llama.cpp's writer.
constexpr std::uint32_t kMaxDims = 4;
// Nested arrays are parsed recursively; a crafted file must not be able to exhaust the stack.
constexpr int kMaxArrayDepth = 8;
constexpr std::int64_t kQ8BlockSize = 32;
constexpr std::size_t kQ8BlockBytes = 2 + kQ8BlockSize;  // fp16 scale, then 32 int8

// GGUF metadata value types.
enum ValueType : std::uint32_t {
  kUInt8 = 0, kInt8 = 1, kUInt16 = 2, kInt16 = 3, kUInt32 = 4, kInt32 = 5, kFloat32 = 6, kBool = 7,
  kString = 8, kArray = 9, kUInt64 = 10, kInt64 = 11, kFloat64 = 12,
};

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  throw InputError(path + ": " + problem);
}

bool is_integer_type(std::uint32_t t) {
  return t <= kInt32 || t == kUInt64 || t == kInt64;
}

/// Bytes of one scalar of type t (strings and arrays have no fixed size: 0).
std::size_t scalar_size(std::uint32_t t) {
  switch (t) {
    case kUInt8: case kInt8: case kBool: return 1;
    case kUInt16: case kInt16: return 2;
    case kUInt32: case kInt32: case kFloat32: return 4;
    case kUInt64: case kInt64: case kFloat64: return 8;
    default: return 0;
  }
}

/// The least number of bytes one array element of type t can occupy, to reject element counts that the rest
/// of the file cannot hold before anything is allocated.
std::size_t min_element_size(std::uint32_t t) {
  if (t == kString) return 8;           // length prefix
  if (t == kArray) return 4 + 8;        // element type + count
  return scalar_size(t);
}

const char* value_type_name(std::uint32_t t) {
  static const char* names[] = {"uint8", "int8",  "uint16", "int16",  "uint32", "int32", "float32",
                                "bool",  "string", "array", "uint64", "int64",  "float64"};
  return t <= kFloat64 ? names[t] : "unknown type";
}

/// A metadata value. Scalars are widened (integers to int64, floats to double); arrays of scalars or strings
/// keep their elements; arrays of arrays are checked and skipped (nothing this project reads uses them).
struct Value {
  std::uint32_t type = kUInt8;
  std::int64_t integer = 0;
  bool integer_overflow = false;  // a uint64 above INT64_MAX
  double real = 0;
  std::string text;
  std::uint32_t element_type = kUInt8;  // for arrays
  std::uint64_t count = 0;              // for arrays
  std::vector<std::string> strings;
  std::vector<std::int64_t> integers;
  std::vector<double> reals;
};

/// Bounds-checked little-endian reader over the mapping.
class Cursor {
 public:
  Cursor(const std::string& path, const unsigned char* data, std::size_t size) : path_(path), data_(data), size_(size) {}

  std::size_t position() const { return position_; }
  std::size_t remaining() const { return size_ - position_; }

  template <typename T>
  T read(const char* what) {
    require(sizeof(T), what);
    T value;
    std::memcpy(&value, data_ + position_, sizeof(T));
    position_ += sizeof(T);
    return value;
  }

  std::string read_string(const char* what) {
    const auto length = read<std::uint64_t>(what);
    require(length, what);
    std::string text(reinterpret_cast<const char*>(data_ + position_), std::size_t(length));
    position_ += std::size_t(length);
    return text;
  }

  /// An element count the remaining bytes can hold at `element_bytes` each.
  std::uint64_t read_count(std::size_t element_bytes, const char* what) {
    const auto count = read<std::uint64_t>(what);
    if (element_bytes > 0 && count > remaining() / element_bytes) {
      fail(path_, "truncated or corrupt file: " + std::string(what) + " claims " + std::to_string(count) +
                      " entries but only " + std::to_string(remaining()) + " bytes remain");
    }
    return count;
  }

 private:
  void require(std::uint64_t bytes, const char* what) const {
    if (bytes > remaining()) {
      fail(path_, "truncated file: " + std::string(what) + " at byte " + std::to_string(position_) + " needs " +
                      std::to_string(bytes) + " bytes, " + std::to_string(remaining()) + " remain");
    }
  }

  const std::string& path_;
  const unsigned char* data_;
  std::size_t size_;
  std::size_t position_ = 0;
};

/// One scalar of type t, widened into `value`.
void read_scalar(Cursor& in, std::uint32_t t, Value& value) {
  switch (t) {
    case kUInt8: value.integer = in.read<std::uint8_t>("metadata value"); break;
    case kInt8: value.integer = in.read<std::int8_t>("metadata value"); break;
    case kUInt16: value.integer = in.read<std::uint16_t>("metadata value"); break;
    case kInt16: value.integer = in.read<std::int16_t>("metadata value"); break;
    case kUInt32: value.integer = in.read<std::uint32_t>("metadata value"); break;
    case kInt32: value.integer = in.read<std::int32_t>("metadata value"); break;
    case kInt64: value.integer = in.read<std::int64_t>("metadata value"); break;
    case kUInt64: {
      const auto raw = in.read<std::uint64_t>("metadata value");
      value.integer_overflow = raw > std::uint64_t(std::numeric_limits<std::int64_t>::max());
      value.integer = std::int64_t(raw & 0x7fffffffffffffffull);
      break;
    }
    case kBool: value.integer = in.read<std::uint8_t>("metadata value") != 0; break;
    case kFloat32: value.real = in.read<float>("metadata value"); break;
    case kFloat64: value.real = in.read<double>("metadata value"); break;
    default: break;
  }
}

Value read_value(Cursor& in, std::uint32_t type, const std::string& key, const std::string& path, int depth);

/// An array's elements: strings and scalars are kept, nested arrays are walked for bounds only.
void read_array(Cursor& in, Value& value, const std::string& key, const std::string& path, int depth) {
  if (depth >= kMaxArrayDepth) fail(path, "metadata " + key + " nests arrays deeper than " + std::to_string(kMaxArrayDepth));
  value.element_type = in.read<std::uint32_t>("array element type");
  if (value.element_type > kFloat64) {
    fail(path, "metadata " + key + " has an array of unknown type " + std::to_string(value.element_type));
  }
  value.count = in.read_count(min_element_size(value.element_type), "metadata array");
  for (std::uint64_t i = 0; i < value.count; ++i) {
    if (value.element_type == kString) {
      value.strings.push_back(in.read_string("metadata string"));
    } else if (value.element_type == kArray) {
      read_value(in, kArray, key, path, depth + 1);
    } else {
      Value element;
      read_scalar(in, value.element_type, element);
      if (value.element_type == kFloat32 || value.element_type == kFloat64) {
        value.reals.push_back(element.real);
      } else {
        value.integers.push_back(element.integer);
      }
    }
  }
}

Value read_value(Cursor& in, std::uint32_t type, const std::string& key, const std::string& path, int depth) {
  Value value;
  value.type = type;
  if (type == kString) {
    value.text = in.read_string("metadata string");
  } else if (type == kArray) {
    read_array(in, value, key, path, depth);
  } else if (scalar_size(type) != 0) {
    read_scalar(in, type, value);
  } else {
    fail(path, "metadata " + key + " has unknown value type " + std::to_string(type));
  }
  return value;
}

/// Bytes of a tensor of `numel` elements for the ggml types whose layout is known here; 0 when unknown.
/// Used for range checks only (dequantisation supports fewer types).
std::uint64_t tensor_bytes(std::uint32_t type, std::int64_t inner, std::int64_t numel) {
  struct Layout { std::uint32_t type, block, bytes; };
  static const Layout layouts[] = {
      {0, 1, 4},     {1, 1, 2},     {2, 32, 18},   {3, 32, 20},   {6, 32, 22},  {7, 32, 24},
      {8, 32, 34},   {9, 32, 36},   {10, 256, 84}, {11, 256, 110}, {12, 256, 144}, {13, 256, 176},
      {14, 256, 210}, {15, 256, 292}, {24, 1, 1},   {25, 1, 2},    {26, 1, 4},   {27, 1, 8},
      {28, 1, 8},    {30, 1, 2}};
  for (const Layout& l : layouts) {
    if (l.type != type) continue;
    if (inner % l.block != 0) return std::numeric_limits<std::uint64_t>::max();  // rows must hold whole blocks
    return std::uint64_t(numel / l.block) * l.bytes;
  }
  return 0;
}

}  // namespace

std::int64_t GgufTensorInfo::numel() const {
  return std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<std::int64_t>());
}

std::string ggml_type_name(std::uint32_t type) {
  static const std::map<std::uint32_t, const char*> names = {
      {0, "F32"},      {1, "F16"},      {2, "Q4_0"},    {3, "Q4_1"},    {6, "Q5_0"},    {7, "Q5_1"},
      {8, "Q8_0"},     {9, "Q8_1"},     {10, "Q2_K"},   {11, "Q3_K"},   {12, "Q4_K"},   {13, "Q5_K"},
      {14, "Q6_K"},    {15, "Q8_K"},    {16, "IQ2_XXS"}, {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"},
      {20, "IQ4_NL"},  {21, "IQ3_S"},   {22, "IQ2_S"},  {23, "IQ4_XS"}, {24, "I8"},     {25, "I16"},
      {26, "I32"},     {27, "I64"},     {28, "F64"},    {29, "IQ1_M"},  {30, "BF16"},   {34, "TQ1_0"},
      {35, "TQ2_0"},   {39, "MXFP4"}};
  const auto found = names.find(type);
  return found != names.end() ? found->second : "type " + std::to_string(type);
}

struct GgufFile::Impl {
  std::string path;
  std::shared_ptr<const FileMapping> mapping;
  int version = 0;
  std::map<std::string, Value> metadata;
  std::vector<GgufTensorInfo> tensors;
  std::unordered_map<std::string, std::size_t> tensor_index;
  std::size_t data_offset = 0;  // start of the tensor data section in the file

  const unsigned char* bytes() const { return mapping->data(); }

  void parse();
  void parse_metadata(Cursor& in, std::uint64_t count);
  void parse_tensor_infos(Cursor& in, std::uint64_t count);
  std::uint64_t alignment() const;
  void check_tensor_ranges() const;

  const Value& value(const std::string& key) const {
    const auto found = metadata.find(key);
    if (found == metadata.end()) fail(path, "missing metadata " + key);
    return found->second;
  }
  [[noreturn]] void wrong_type(const std::string& key, const char* expected) const {
    fail(path, "metadata " + key + " is not " + expected + " (it is " + value_type_name(value(key).type) + ")");
  }
};

void GgufFile::Impl::parse() {
  Cursor in(path, bytes(), mapping->size());
  if (mapping->size() < 4 || std::memcmp(bytes(), "GGUF", 4) != 0) fail(path, "not a GGUF file (bad magic)");
  in.read<std::uint32_t>("magic");
  const auto raw_version = in.read<std::uint32_t>("version");
  // Version 1 used 32-bit lengths; a byte-swapped number means a big-endian file.
  if (raw_version != 2 && raw_version != 3) {
    fail(path, "unsupported GGUF version " + std::to_string(raw_version) + " (supported: 2, 3, little-endian)");
  }
  version = int(raw_version);
  const auto tensor_count = in.read<std::uint64_t>("tensor count");
  const auto metadata_count = in.read<std::uint64_t>("metadata count");
  // Each key/value needs at least a key length, a type and one byte; each tensor info at least 32 bytes.
  if (metadata_count > in.remaining() / 13 || tensor_count > in.remaining() / 32) {
    fail(path, "truncated or corrupt file: header claims " + std::to_string(metadata_count) + " metadata entries and " +
                   std::to_string(tensor_count) + " tensors");
  }
  parse_metadata(in, metadata_count);
  parse_tensor_infos(in, tensor_count);
  const std::uint64_t align = alignment();
  const std::uint64_t start = (in.position() + align - 1) / align * align;
  if (start > mapping->size() && tensor_count > 0) fail(path, "truncated file: no tensor data section");
  data_offset = std::size_t(std::min<std::uint64_t>(start, mapping->size()));
  check_tensor_ranges();
}

void GgufFile::Impl::parse_metadata(Cursor& in, std::uint64_t count) {
  for (std::uint64_t i = 0; i < count; ++i) {
    std::string key = in.read_string("metadata key");
    const auto type = in.read<std::uint32_t>("metadata type");
    Value value = read_value(in, type, key, path, 0);
    if (!metadata.emplace(key, std::move(value)).second) fail(path, "duplicate metadata key " + key);
  }
}

void GgufFile::Impl::parse_tensor_infos(Cursor& in, std::uint64_t count) {
  for (std::uint64_t i = 0; i < count; ++i) {
    GgufTensorInfo info;
    info.name = in.read_string("tensor name");
    const auto dims = in.read<std::uint32_t>("tensor dimension count");
    if (dims == 0 || dims > kMaxDims) fail(path, "tensor " + info.name + " has " + std::to_string(dims) + " dimensions");
    std::int64_t numel = 1;
    for (std::uint32_t d = 0; d < dims; ++d) {
      const auto extent = in.read<std::uint64_t>("tensor extent");
      // Each extent and the product must stay far below what could overflow byte counts later.
      if (extent == 0 || extent > (std::uint64_t(1) << 40) || std::uint64_t(numel) > (std::uint64_t(1) << 50) / extent) {
        fail(path, "tensor " + info.name + " has an invalid extent " + std::to_string(extent));
      }
      numel *= std::int64_t(extent);
      info.shape.insert(info.shape.begin(), std::int64_t(extent));  // GGUF lists the innermost extent first
    }
    info.type = in.read<std::uint32_t>("tensor type");
    info.offset = in.read<std::uint64_t>("tensor offset");
    if (!tensor_index.emplace(info.name, tensors.size()).second) fail(path, "duplicate tensor " + info.name);
    tensors.push_back(std::move(info));
  }
}

std::uint64_t GgufFile::Impl::alignment() const {
  const auto found = metadata.find("general.alignment");
  if (found == metadata.end()) return kDefaultAlignment;
  const Value& v = found->second;
  const std::int64_t a = v.integer;
  if (!is_integer_type(v.type) || v.integer_overflow || a <= 0 || (a & (a - 1)) != 0 || a > (1 << 20)) {
    fail(path, "general.alignment is not a power of two");
  }
  return std::uint64_t(a);
}

void GgufFile::Impl::check_tensor_ranges() const {
  const std::uint64_t data_size = mapping->size() - data_offset;
  const std::uint64_t align = alignment();
  for (const GgufTensorInfo& t : tensors) {
    if (t.offset % align != 0) fail(path, "tensor " + t.name + " is not aligned to " + std::to_string(align) + " bytes");
    const std::uint64_t size = tensor_bytes(t.type, t.shape.back(), t.numel());
    if (size == std::numeric_limits<std::uint64_t>::max()) {
      fail(path, "tensor " + t.name + " of type " + ggml_type_name(t.type) + " has rows of partial blocks");
    }
    if (t.offset > data_size || size > data_size - t.offset) {
      fail(path, "truncated file: tensor " + t.name + " (bytes " + std::to_string(t.offset) + "+" + std::to_string(size) +
                     ") lies outside the data section of " + std::to_string(data_size) + " bytes");
    }
  }
}

GgufFile::GgufFile(const std::string& path) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->mapping = FileMapping::open(path);
  impl_->parse();
}

GgufFile::~GgufFile() = default;
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;

const std::string& GgufFile::path() const { return impl_->path; }
int GgufFile::version() const { return impl_->version; }

bool GgufFile::has(const std::string& key) const { return impl_->metadata.count(key) != 0; }

std::vector<std::string> GgufFile::keys() const {
  std::vector<std::string> keys;
  for (const auto& entry : impl_->metadata) keys.push_back(entry.first);
  return keys;
}

std::string GgufFile::get_string(const std::string& key) const {
  const Value& v = impl_->value(key);
  if (v.type != kString) impl_->wrong_type(key, "a string");
  return v.text;
}

std::int64_t GgufFile::get_int(const std::string& key) const {
  const Value& v = impl_->value(key);
  if (!is_integer_type(v.type)) impl_->wrong_type(key, "an integer");
  if (v.integer_overflow) fail(impl_->path, "metadata " + key + " is out of range");
  return v.integer;
}

double GgufFile::get_float(const std::string& key) const {
  const Value& v = impl_->value(key);
  if (v.type == kFloat32 || v.type == kFloat64) return v.real;
  if (is_integer_type(v.type)) return double(get_int(key));
  impl_->wrong_type(key, "a number");
}

bool GgufFile::get_bool(const std::string& key) const {
  const Value& v = impl_->value(key);
  if (v.type != kBool) impl_->wrong_type(key, "a bool");
  return v.integer != 0;
}

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  const Value& v = impl_->value(key);
  if (v.type != kArray || v.element_type != kString) impl_->wrong_type(key, "an array of strings");
  return v.strings;
}

std::vector<std::int64_t> GgufFile::get_int_array(const std::string& key) const {
  const Value& v = impl_->value(key);
  if (v.type != kArray || !(is_integer_type(v.element_type) || v.element_type == kBool)) {
    impl_->wrong_type(key, "an array of integers");
  }
  return v.integers;
}

std::vector<float> GgufFile::get_float_array(const std::string& key) const {
  const Value& v = impl_->value(key);
  if (v.type != kArray) impl_->wrong_type(key, "an array of numbers");
  if (v.element_type == kFloat32 || v.element_type == kFloat64) return std::vector<float>(v.reals.begin(), v.reals.end());
  if (is_integer_type(v.element_type)) return std::vector<float>(v.integers.begin(), v.integers.end());
  impl_->wrong_type(key, "an array of numbers");
}

std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}
std::int64_t GgufFile::get_int(const std::string& key, std::int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}
double GgufFile::get_float(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool(const std::string& key, bool fallback) const { return has(key) ? get_bool(key) : fallback; }

const std::vector<GgufTensorInfo>& GgufFile::tensors() const { return impl_->tensors; }

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  const auto found = impl_->tensor_index.find(name);
  return found == impl_->tensor_index.end() ? nullptr : &impl_->tensors[found->second];
}

std::vector<float> GgufFile::dequantize(const GgufTensorInfo& tensor) const {
  // Ranges were checked against the file when it was parsed; `tensor` must be one of this file's entries.
  const unsigned char* src = impl_->bytes() + impl_->data_offset + tensor.offset;
  const std::size_t n = std::size_t(tensor.numel());
  std::vector<float> out(n);
  switch (GgmlType(tensor.type)) {
    case GgmlType::kF32:
      std::memcpy(out.data(), src, n * sizeof(float));
      break;
    case GgmlType::kF16:
    case GgmlType::kBF16: {
      const bool is_f16 = GgmlType(tensor.type) == GgmlType::kF16;
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t half;
        std::memcpy(&half, src + 2 * i, 2);
        out[i] = is_f16 ? float16_to_float(half) : bfloat16_to_float(half);
      }
      break;
    }
    case GgmlType::kQ8_0:
      for (std::size_t block = 0; block < n / kQ8BlockSize; ++block) {
        const unsigned char* b = src + block * kQ8BlockBytes;
        std::uint16_t scale_bits;
        std::memcpy(&scale_bits, b, 2);
        const float scale = float16_to_float(scale_bits);
        const auto* quants = reinterpret_cast<const std::int8_t*>(b + 2);
        for (std::int64_t j = 0; j < kQ8BlockSize; ++j) out[block * kQ8BlockSize + j] = scale * float(quants[j]);
      }
      break;
    default:
      fail(impl_->path, "tensor " + tensor.name + " has type " + ggml_type_name(tensor.type) +
                            "; supported: F32, F16, BF16, Q8_0");
  }
  return out;
}

}  // namespace oscar::model
