#include "io/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include "core/error.h"

namespace oscar::io {
namespace {

namespace fmt = gguf_format;

constexpr std::uint32_t kLastValueType = std::uint32_t(GgufType::kFloat64);
// The least bytes one key/value (empty key, uint8 value) and one tensor info (no extents) occupy: counts in the
// header are checked against the bytes that remain before anything is allocated.
constexpr std::uint64_t kMinKeyValueBytes = 8 + 4 + 1;
constexpr std::uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;

[[noreturn]] void fail(const std::string& path, const std::string& problem) { throw InputError(path + ": " + problem); }

/// A key or tensor name from a file, fit for a one-line message: control bytes as \xNN, at most 200 bytes.
std::string shown(const std::string& name) {
  constexpr std::size_t kMaxShown = 200;
  std::string out;
  for (std::size_t i = 0; i < name.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c < 0x20 || c == 0x7f) {
      static const char* const hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += char(c);
    }
  }
  if (name.size() > kMaxShown) out += "...";
  return out;
}

bool is_value_type(std::uint32_t t) { return t <= kLastValueType; }

/// Bytes of one scalar of type t; 0 for strings and arrays.
std::size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kBool: return 1;
    case GgufType::kUint16: case GgufType::kInt16: return 2;
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kFloat32: return 4;
    case GgufType::kUint64: case GgufType::kInt64: case GgufType::kFloat64: return 8;
    default: return 0;
  }
}

/// The least bytes one array element of type t occupies.
std::uint64_t min_element_bytes(GgufType t) {
  if (t == GgufType::kString) return 8;     // length
  if (t == GgufType::kArray) return 4 + 8;  // element type + count
  return scalar_size(t);
}

bool is_signed_integer(GgufType t) {
  return t == GgufType::kInt8 || t == GgufType::kInt16 || t == GgufType::kInt32 || t == GgufType::kInt64;
}
bool is_unsigned_integer(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kUint16 || t == GgufType::kUint32 || t == GgufType::kUint64;
}

std::string describe_type(const GgufValue& value) {
  if (value.type != GgufType::kArray) return gguf_type_name(value.type);
  return "array of " + gguf_type_name(value.element_type);
}

[[noreturn]] void wrong_type(const std::string& what, const char* expected, const GgufValue& value) {
  throw InputError(what + " is not " + expected + " (it is " + describe_type(value) + ")");
}

std::uint64_t round_up(std::uint64_t n, std::uint64_t alignment) { return (n + alignment - 1) / alignment * alignment; }

/// "" when `value` is well-formed (scalar bits fit the type, array elements all of the element type, nesting
/// within kMaxArrayNesting), else the problem.
std::string value_problem(const GgufValue& value, int depth) {
  if (!is_value_type(std::uint32_t(value.type))) return "has unknown value type " + std::to_string(std::uint32_t(value.type));
  const std::size_t size = scalar_size(value.type);
  if (size != 0 && size < 8 && (value.bits >> (8 * size)) != 0) {
    return "holds bits " + std::to_string(value.bits) + " that do not fit a " + gguf_type_name(value.type);
  }
  if (value.type != GgufType::kArray) return "";
  if (depth >= fmt::kMaxArrayNesting) return "nests arrays deeper than " + std::to_string(fmt::kMaxArrayNesting);
  if (!is_value_type(std::uint32_t(value.element_type))) {
    return "is an array of unknown value type " + std::to_string(std::uint32_t(value.element_type));
  }
  for (std::size_t i = 0; i < value.elements.size(); ++i) {
    const GgufValue& element = value.elements[i];
    if (element.type != value.element_type) {
      return "element " + std::to_string(i) + " is a " + gguf_type_name(element.type) + " in an array of " +
             gguf_type_name(value.element_type);
    }
    std::string problem = value_problem(element, depth + 1);
    if (!problem.empty()) return "element " + std::to_string(i) + " " + problem;
  }
  return "";
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

/// A whole file mapped read-only.
class Mapping {
 public:
  explicit Mapping(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(path, std::string("cannot open (") + std::strerror(errno) + ")");
    struct stat info {};
    if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
      ::close(fd);
      fail(path, "not a regular file");
    }
    size_ = std::size_t(info.st_size);
    if (size_ > 0) {
      void* base = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      const int error = errno;
      ::close(fd);
      if (base == MAP_FAILED) fail(path, std::string("cannot map (") + std::strerror(error) + ")");
      base_ = base;
    } else {
      ::close(fd);
    }
  }
  ~Mapping() {
    if (base_ != nullptr) ::munmap(base_, size_);
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  const std::uint8_t* data() const { return static_cast<const std::uint8_t*>(base_); }
  std::size_t size() const { return size_; }

 private:
  void* base_ = nullptr;
  std::size_t size_ = 0;
};

/// Bounds-checked little-endian reads. `what` (and the key or tensor name `of`, when given) name the field in
/// the error.
class Cursor {
 public:
  Cursor(const std::string& path, const std::uint8_t* data, std::size_t size) : path_(path), data_(data), size_(size) {}

  std::uint64_t position() const { return position_; }
  std::uint64_t remaining() const { return size_ - position_; }

  void require(std::uint64_t bytes, const char* what, const std::string* of) const {
    if (bytes > remaining()) {
      fail(path_, "truncated file: " + std::string(what) + (of ? " of " + shown(*of) : std::string()) + " at byte " +
                      std::to_string(position_) + " needs " + std::to_string(bytes) + " bytes, " +
                      std::to_string(remaining()) + " remain");
    }
  }

  /// `size` (1..8) bytes as a zero-extended little-endian number.
  std::uint64_t read_bits(std::size_t size, const char* what, const std::string* of = nullptr) {
    require(size, what, of);
    std::uint64_t bits = 0;
    for (std::size_t i = 0; i < size; ++i) bits |= std::uint64_t(data_[position_ + i]) << (8 * i);
    position_ += size;
    return bits;
  }
  std::uint32_t read_u32(const char* what, const std::string* of = nullptr) { return std::uint32_t(read_bits(4, what, of)); }
  std::uint64_t read_u64(const char* what, const std::string* of = nullptr) { return read_bits(8, what, of); }

  std::string read_string(const char* what, const std::string* of = nullptr) {
    const std::uint64_t length = read_u64(what, of);
    require(length, what, of);
    std::string text(reinterpret_cast<const char*>(data_ + position_), std::size_t(length));
    position_ += length;
    return text;
  }

 private:
  const std::string& path_;
  const std::uint8_t* data_;
  std::uint64_t size_;
  std::uint64_t position_ = 0;
};

/// The value of metadata `key`, of type `type`, at the cursor.
GgufValue read_value(Cursor& in, std::uint32_t type, const std::string& key, const std::string& path, int depth) {
  if (!is_value_type(type)) fail(path, "metadata " + shown(key) + " has unknown value type " + std::to_string(type));
  GgufValue value;
  value.type = GgufType(type);
  if (value.type == GgufType::kString) {
    value.text = in.read_string("metadata string", &key);
  } else if (value.type == GgufType::kArray) {
    if (depth >= fmt::kMaxArrayNesting) {
      fail(path, "metadata " + shown(key) + " nests arrays deeper than " + std::to_string(fmt::kMaxArrayNesting));
    }
    const std::uint32_t element_type = in.read_u32("metadata array type", &key);
    if (!is_value_type(element_type)) {
      fail(path, "metadata " + shown(key) + " is an array of unknown value type " + std::to_string(element_type));
    }
    value.element_type = GgufType(element_type);
    const std::uint64_t count = in.read_u64("metadata array count", &key);
    if (count > in.remaining() / min_element_bytes(value.element_type)) {
      fail(path, "truncated or corrupt file: metadata " + shown(key) + " claims " + std::to_string(count) + " " +
                     gguf_type_name(value.element_type) + " elements but only " + std::to_string(in.remaining()) +
                     " bytes remain");
    }
    value.elements.reserve(std::size_t(count));
    for (std::uint64_t i = 0; i < count; ++i) value.elements.push_back(read_value(in, element_type, key, path, depth + 1));
  } else {
    value.bits = in.read_bits(scalar_size(value.type), "metadata value", &key);
  }
  return value;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Names and sizes

std::string gguf_type_name(GgufType type) {
  static const char* const names[] = {"uint8", "int8",   "uint16", "int16", "uint32", "int32",  "float32",
                                      "bool",  "string", "array",  "uint64", "int64", "float64"};
  const auto index = std::uint32_t(type);
  return index <= kLastValueType ? names[index] : "type " + std::to_string(index);
}

const fmt::GgmlTypeLayout* find_ggml_type(std::uint32_t id) {
  for (const fmt::GgmlTypeLayout& layout : fmt::kGgmlTypes) {
    if (layout.id == id) return &layout;
  }
  return nullptr;
}

std::string ggml_type_name(std::uint32_t id) {
  const fmt::GgmlTypeLayout* layout = find_ggml_type(id);
  return layout ? layout->name : "type " + std::to_string(id);
}

std::uint64_t ggml_tensor_bytes(const std::string& name, std::uint32_t id, const std::vector<std::uint64_t>& ne) {
  const fmt::GgmlTypeLayout* layout = find_ggml_type(id);
  if (!layout) throw std::invalid_argument("tensor " + name + " has ggml type " + std::to_string(id) + " of unknown size");
  // ggml keeps extents and the element count as int64.
  constexpr std::uint64_t kLimit = std::uint64_t(std::numeric_limits<std::int64_t>::max());
  std::uint64_t numel = 1;
  for (std::uint64_t extent : ne) {
    if (extent > kLimit || (extent != 0 && numel > kLimit / extent)) {
      throw std::invalid_argument("tensor " + name + " is too large (extent " + std::to_string(extent) + ")");
    }
    numel *= extent;
  }
  const std::uint64_t inner = ne.empty() ? 1 : ne[0];
  if (inner % layout->block_elements != 0) {
    throw std::invalid_argument("tensor " + name + " of type " + layout->name + " has ne[0] = " + std::to_string(inner) +
                                ", not a multiple of the block size " + std::to_string(layout->block_elements));
  }
  const std::uint64_t blocks = numel / layout->block_elements;
  if (blocks > kLimit / layout->block_bytes) throw std::invalid_argument("tensor " + name + " is too large");
  return blocks * layout->block_bytes;
}

std::uint64_t GgufTensorInfo::numel() const {
  std::uint64_t n = 1;
  for (std::uint64_t extent : ne) n *= extent;
  return n;
}

// ---------------------------------------------------------------------------------------------------------------
// Values

namespace {
GgufValue scalar(GgufType type, std::uint64_t bits) {
  GgufValue value;
  value.type = type;
  value.bits = bits;
  return value;
}
template <typename T>
std::uint64_t bits_of(T v) {
  static_assert(sizeof(T) <= 8, "scalar");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));  // little-endian host: the low bytes are the value's bytes
  return bits;
}
}  // namespace

GgufValue GgufValue::uint8(std::uint8_t v) { return scalar(GgufType::kUint8, v); }
GgufValue GgufValue::int8(std::int8_t v) { return scalar(GgufType::kInt8, bits_of(v)); }
GgufValue GgufValue::uint16(std::uint16_t v) { return scalar(GgufType::kUint16, v); }
GgufValue GgufValue::int16(std::int16_t v) { return scalar(GgufType::kInt16, bits_of(v)); }
GgufValue GgufValue::uint32(std::uint32_t v) { return scalar(GgufType::kUint32, v); }
GgufValue GgufValue::int32(std::int32_t v) { return scalar(GgufType::kInt32, bits_of(v)); }
GgufValue GgufValue::uint64(std::uint64_t v) { return scalar(GgufType::kUint64, v); }
GgufValue GgufValue::int64(std::int64_t v) { return scalar(GgufType::kInt64, bits_of(v)); }
GgufValue GgufValue::float32(float v) { return scalar(GgufType::kFloat32, bits_of(v)); }
GgufValue GgufValue::float64(double v) { return scalar(GgufType::kFloat64, bits_of(v)); }
GgufValue GgufValue::boolean(bool v) { return scalar(GgufType::kBool, v ? 1 : 0); }

GgufValue GgufValue::string(std::string v) {
  GgufValue value;
  value.type = GgufType::kString;
  value.text = std::move(v);
  return value;
}

GgufValue GgufValue::array(GgufType element_type, std::vector<GgufValue> elements) {
  GgufValue value;
  value.type = GgufType::kArray;
  value.element_type = element_type;
  value.elements = std::move(elements);
  const std::string problem = value_problem(value, 0);
  if (!problem.empty()) throw std::invalid_argument("GGUF array " + problem);
  return value;
}

GgufValue GgufValue::string_array(const std::vector<std::string>& values) {
  std::vector<GgufValue> elements;
  elements.reserve(values.size());
  for (const std::string& v : values) elements.push_back(string(v));
  return array(GgufType::kString, std::move(elements));
}

GgufValue GgufValue::float32_array(const std::vector<float>& values) {
  std::vector<GgufValue> elements;
  elements.reserve(values.size());
  for (float v : values) elements.push_back(float32(v));
  return array(GgufType::kFloat32, std::move(elements));
}

GgufValue GgufValue::int32_array(const std::vector<std::int32_t>& values) {
  std::vector<GgufValue> elements;
  elements.reserve(values.size());
  for (std::int32_t v : values) elements.push_back(int32(v));
  return array(GgufType::kInt32, std::move(elements));
}

bool GgufValue::is_integer() const { return is_signed_integer(type) || is_unsigned_integer(type); }
bool GgufValue::is_float() const { return type == GgufType::kFloat32 || type == GgufType::kFloat64; }

std::string GgufValue::as_string(const std::string& what) const {
  if (type != GgufType::kString) wrong_type(what, "a string", *this);
  return text;
}

std::int64_t GgufValue::as_int64(const std::string& what) const {
  switch (type) {
    case GgufType::kUint8: case GgufType::kUint16: case GgufType::kUint32: return std::int64_t(bits);
    case GgufType::kInt8: return std::int8_t(std::uint8_t(bits));
    case GgufType::kInt16: return std::int16_t(std::uint16_t(bits));
    case GgufType::kInt32: return std::int32_t(std::uint32_t(bits));
    case GgufType::kInt64: return std::int64_t(bits);
    case GgufType::kUint64:
      if (bits > std::uint64_t(std::numeric_limits<std::int64_t>::max())) throw InputError(what + " is out of range");
      return std::int64_t(bits);
    default: wrong_type(what, "an integer", *this);
  }
}

std::uint64_t GgufValue::as_uint64(const std::string& what) const {
  if (type == GgufType::kUint64) return bits;
  const std::int64_t v = as_int64(what);
  if (v < 0) throw InputError(what + " is negative");
  return std::uint64_t(v);
}

double GgufValue::as_double(const std::string& what) const {
  if (type == GgufType::kFloat32) {
    float v;
    const auto raw = std::uint32_t(bits);
    std::memcpy(&v, &raw, sizeof v);
    return v;
  }
  if (type == GgufType::kFloat64) {
    double v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
  }
  if (type == GgufType::kUint64) return double(bits);
  if (is_integer()) return double(as_int64(what));
  wrong_type(what, "a number", *this);
}

bool GgufValue::as_bool(const std::string& what) const {
  if (type != GgufType::kBool) wrong_type(what, "a bool", *this);
  return bits != 0;
}

std::vector<std::string> GgufValue::as_string_array(const std::string& what) const {
  if (type != GgufType::kArray || element_type != GgufType::kString) wrong_type(what, "an array of strings", *this);
  std::vector<std::string> out;
  out.reserve(elements.size());
  for (const GgufValue& element : elements) out.push_back(element.text);
  return out;
}

std::vector<std::int64_t> GgufValue::as_int64_array(const std::string& what) const {
  if (type != GgufType::kArray || !(is_signed_integer(element_type) || is_unsigned_integer(element_type))) {
    wrong_type(what, "an array of integers", *this);
  }
  std::vector<std::int64_t> out;
  out.reserve(elements.size());
  for (std::size_t i = 0; i < elements.size(); ++i) out.push_back(elements[i].as_int64(what + "[" + std::to_string(i) + "]"));
  return out;
}

std::vector<float> GgufValue::as_float_array(const std::string& what) const {
  if (type != GgufType::kArray || !(element_type == GgufType::kFloat32 || element_type == GgufType::kFloat64)) {
    wrong_type(what, "an array of floats", *this);
  }
  std::vector<float> out;
  out.reserve(elements.size());
  for (const GgufValue& element : elements) out.push_back(float(element.as_double(what)));
  return out;
}

std::vector<double> GgufValue::as_double_array(const std::string& what) const {
  if (type != GgufType::kArray || !(element_type == GgufType::kFloat32 || element_type == GgufType::kFloat64 ||
                                    is_signed_integer(element_type) || is_unsigned_integer(element_type))) {
    wrong_type(what, "an array of numbers", *this);
  }
  std::vector<double> out;
  out.reserve(elements.size());
  for (const GgufValue& element : elements) out.push_back(element.as_double(what));
  return out;
}

bool GgufValue::operator==(const GgufValue& other) const {
  if (type != other.type) return false;
  if (type == GgufType::kString) return text == other.text;
  if (type == GgufType::kArray) return element_type == other.element_type && elements == other.elements;
  return bits == other.bits;
}

// ---------------------------------------------------------------------------------------------------------------
// GgufReader

struct GgufReader::Impl {
  std::string path;
  std::unique_ptr<Mapping> mapping;
  std::uint32_t version = 0;
  std::uint32_t alignment = fmt::kDefaultAlignment;
  std::uint64_t data_offset = 0;
  std::vector<GgufKeyValue> metadata;
  std::unordered_map<std::string, std::size_t> metadata_index;
  std::vector<GgufTensorInfo> tensors;
  std::unordered_map<std::string, std::size_t> tensor_index;

  void parse();
  void read_alignment();
  void check_tensor_data() const;
};

void GgufReader::Impl::parse() {
  Cursor in(path, mapping->data(), mapping->size());
  in.require(sizeof fmt::kMagic, "magic", nullptr);
  if (std::memcmp(mapping->data(), fmt::kMagic, sizeof fmt::kMagic) != 0) fail(path, "not a GGUF file (bad magic)");
  in.read_u32("magic");
  version = in.read_u32("version");
  if (version < fmt::kOldestReadVersion || version > fmt::kWriteVersion) {
    fail(path, "unsupported GGUF version " + std::to_string(version) + " (supported: " +
                   std::to_string(fmt::kOldestReadVersion) + " to " + std::to_string(fmt::kWriteVersion) +
                   ", little-endian)");
  }
  const std::uint64_t tensor_count = in.read_u64("tensor count");
  const std::uint64_t kv_count = in.read_u64("metadata count");
  if (kv_count > in.remaining() / kMinKeyValueBytes || tensor_count > in.remaining() / kMinTensorInfoBytes ||
      kv_count * kMinKeyValueBytes + tensor_count * kMinTensorInfoBytes > in.remaining()) {
    fail(path, "truncated or corrupt file: the header claims " + std::to_string(kv_count) + " metadata entries and " +
                   std::to_string(tensor_count) + " tensors but only " + std::to_string(in.remaining()) +
                   " bytes follow");
  }

  metadata.reserve(std::size_t(kv_count));
  for (std::uint64_t i = 0; i < kv_count; ++i) {
    std::string key = in.read_string("metadata key");
    const std::uint32_t type = in.read_u32("metadata value type", &key);
    GgufValue value = read_value(in, type, key, path, 0);
    if (!metadata_index.emplace(key, metadata.size()).second) fail(path, "duplicate metadata key " + shown(key));
    metadata.push_back(GgufKeyValue{std::move(key), std::move(value)});
  }
  read_alignment();

  tensors.reserve(std::size_t(tensor_count));
  for (std::uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo info;
    info.name = in.read_string("tensor name");
    const std::uint32_t dims = in.read_u32("tensor dimension count", &info.name);
    if (dims > fmt::kMaxDims) {
      fail(path, "tensor " + shown(info.name) + " has " + std::to_string(dims) + " dimensions (at most " +
                     std::to_string(fmt::kMaxDims) + ")");
    }
    for (std::uint32_t d = 0; d < dims; ++d) info.ne.push_back(in.read_u64("tensor extents", &info.name));
    info.type = in.read_u32("tensor type", &info.name);
    info.offset = in.read_u64("tensor offset", &info.name);
    try {
      info.byte_size = ggml_tensor_bytes(shown(info.name), info.type, info.ne);
    } catch (const std::invalid_argument& error) {
      fail(path, error.what());
    }
    if (!tensor_index.emplace(info.name, tensors.size()).second) fail(path, "duplicate tensor " + shown(info.name));
    tensors.push_back(std::move(info));
  }
  data_offset = round_up(in.position(), alignment);
  check_tensor_data();
}

void GgufReader::Impl::read_alignment() {
  const auto found = metadata_index.find(fmt::kAlignmentKey);
  if (found == metadata_index.end()) return;
  const GgufValue& value = metadata[found->second].value;
  const std::string what = path + ": metadata " + fmt::kAlignmentKey;
  if (value.type != GgufType::kUint32) wrong_type(what, "a uint32", value);
  if (value.bits == 0 || (value.bits & (value.bits - 1)) != 0) {
    throw InputError(what + " = " + std::to_string(value.bits) + " is not a power of two");
  }
  alignment = std::uint32_t(value.bits);
}

void GgufReader::Impl::check_tensor_data() const {
  const std::uint64_t size = mapping->size();
  const std::uint64_t data_size = size > data_offset ? size - data_offset : 0;
  for (const GgufTensorInfo& t : tensors) {
    if (t.offset % alignment != 0) {
      fail(path, "tensor " + shown(t.name) + " offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
                     std::to_string(alignment));
    }
    if (t.offset > data_size || t.byte_size > data_size - t.offset) {
      fail(path, "tensor " + shown(t.name) + " data (" + std::to_string(t.byte_size) + " bytes at offset " +
                     std::to_string(t.offset) + ") ends past the end of the file, whose data section holds " +
                     std::to_string(data_size) + " bytes (truncated file or bad offset)");
    }
  }
  std::vector<const GgufTensorInfo*> by_offset;
  for (const GgufTensorInfo& t : tensors) {
    if (t.byte_size > 0) by_offset.push_back(&t);
  }
  std::stable_sort(by_offset.begin(), by_offset.end(),
                   [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& before = *by_offset[i - 1];
    if (before.offset + before.byte_size > by_offset[i]->offset) {
      fail(path, "tensor " + shown(by_offset[i]->name) + " overlaps tensor " + shown(before.name));
    }
  }
}

GgufReader::GgufReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->mapping = std::make_unique<Mapping>(path);
  impl_->parse();
}

GgufReader::~GgufReader() = default;
GgufReader::GgufReader(GgufReader&&) noexcept = default;
GgufReader& GgufReader::operator=(GgufReader&&) noexcept = default;

const std::string& GgufReader::path() const { return impl_->path; }
std::uint32_t GgufReader::version() const { return impl_->version; }
std::uint32_t GgufReader::alignment() const { return impl_->alignment; }
std::uint64_t GgufReader::data_offset() const { return impl_->data_offset; }
std::uint64_t GgufReader::file_size() const { return impl_->mapping->size(); }
const std::vector<GgufKeyValue>& GgufReader::metadata() const { return impl_->metadata; }

const GgufValue* GgufReader::find(const std::string& key) const {
  const auto found = impl_->metadata_index.find(key);
  return found == impl_->metadata_index.end() ? nullptr : &impl_->metadata[found->second].value;
}

const GgufValue& GgufReader::value(const std::string& key) const {
  const GgufValue* found = find(key);
  if (!found) fail(impl_->path, "missing metadata " + shown(key));
  return *found;
}

#define OSCAR_GGUF_GETTER(Result, getter, as)                              \
  Result GgufReader::getter(const std::string& key) const {               \
    return value(key).as(impl_->path + ": metadata " + shown(key));       \
  }
OSCAR_GGUF_GETTER(std::string, get_string, as_string)
OSCAR_GGUF_GETTER(std::int64_t, get_int64, as_int64)
OSCAR_GGUF_GETTER(std::uint64_t, get_uint64, as_uint64)
OSCAR_GGUF_GETTER(double, get_double, as_double)
OSCAR_GGUF_GETTER(bool, get_bool, as_bool)
OSCAR_GGUF_GETTER(std::vector<std::string>, get_string_array, as_string_array)
OSCAR_GGUF_GETTER(std::vector<std::int64_t>, get_int64_array, as_int64_array)
OSCAR_GGUF_GETTER(std::vector<float>, get_float_array, as_float_array)
#undef OSCAR_GGUF_GETTER

const std::vector<GgufTensorInfo>& GgufReader::tensors() const { return impl_->tensors; }

const GgufTensorInfo* GgufReader::find_tensor(const std::string& name) const {
  const auto found = impl_->tensor_index.find(name);
  return found == impl_->tensor_index.end() ? nullptr : &impl_->tensors[found->second];
}

GgufBytes GgufReader::tensor_data(const GgufTensorInfo& tensor) const {
  // Checked at open: the range lies inside the file.
  return GgufBytes{impl_->mapping->data() + impl_->data_offset + tensor.offset, std::size_t(tensor.byte_size)};
}

// ---------------------------------------------------------------------------------------------------------------
// GgufWriter

namespace {

void put_bits(std::string& out, std::uint64_t bits, std::size_t size) {
  for (std::size_t i = 0; i < size; ++i) out.push_back(char((bits >> (8 * i)) & 0xff));
}

void put_string(std::string& out, const std::string& text) {
  put_bits(out, text.size(), 8);
  out += text;
}

/// The value's bytes after its type tag.
void put_value(std::string& out, const GgufValue& value) {
  switch (value.type) {
    case GgufType::kString: put_string(out, value.text); break;
    case GgufType::kArray:
      put_bits(out, std::uint32_t(value.element_type), 4);
      put_bits(out, value.elements.size(), 8);
      for (const GgufValue& element : value.elements) put_value(out, element);
      break;
    default: put_bits(out, value.bits, scalar_size(value.type)); break;
  }
}

}  // namespace

void GgufWriter::add_metadata(const std::string& key, GgufValue value) {
  for (const GgufKeyValue& kv : metadata_) {
    if (kv.key == key) throw std::invalid_argument("GGUF writer: duplicate metadata key " + key);
  }
  const std::string problem = value_problem(value, 0);
  if (!problem.empty()) throw std::invalid_argument("GGUF writer: metadata " + key + " " + problem);
  if (key == fmt::kAlignmentKey &&
      (value.type != GgufType::kUint32 || value.bits == 0 || (value.bits & (value.bits - 1)) != 0)) {
    throw std::invalid_argument(std::string("GGUF writer: ") + fmt::kAlignmentKey + " must be a uint32 power of two");
  }
  metadata_.push_back(GgufKeyValue{key, std::move(value)});
}

void GgufWriter::add_tensor(const std::string& name, std::uint32_t ggml_type, std::vector<std::uint64_t> ne,
                            std::vector<std::uint8_t> bytes) {
  const std::size_t size = bytes.size();
  add(name, ggml_type, std::move(ne), size, std::move(bytes), nullptr);
}

void GgufWriter::add_tensor_view(const std::string& name, std::uint32_t ggml_type, std::vector<std::uint64_t> ne,
                                 const void* data, std::size_t size) {
  if (data == nullptr && size > 0) throw std::invalid_argument("GGUF writer: tensor " + name + " has no data");
  add(name, ggml_type, std::move(ne), size, {}, data);
}

void GgufWriter::add(const std::string& name, std::uint32_t ggml_type, std::vector<std::uint64_t> ne, std::size_t size,
                     std::vector<std::uint8_t> owned, const void* data) {
  for (const Tensor& t : tensors_) {
    if (t.info.name == name) throw std::invalid_argument("GGUF writer: duplicate tensor " + name);
  }
  if (ne.size() > fmt::kMaxDims) {
    throw std::invalid_argument("GGUF writer: tensor " + name + " has " + std::to_string(ne.size()) + " dimensions");
  }
  Tensor tensor;
  tensor.info.name = name;
  tensor.info.type = ggml_type;
  tensor.info.ne = std::move(ne);
  try {
    tensor.info.byte_size = ggml_tensor_bytes(name, ggml_type, tensor.info.ne);
  } catch (const std::invalid_argument& error) {
    throw std::invalid_argument(std::string("GGUF writer: ") + error.what());
  }
  if (tensor.info.byte_size != size) {
    throw std::invalid_argument("GGUF writer: tensor " + name + " has " + std::to_string(size) + " bytes, its type " +
                                ggml_type_name(ggml_type) + " and extents need " + std::to_string(tensor.info.byte_size));
  }
  tensor.owned = std::move(owned);
  tensor.data = static_cast<const std::uint8_t*>(data);
  tensors_.push_back(std::move(tensor));
}

std::uint32_t GgufWriter::alignment() const {
  for (const GgufKeyValue& kv : metadata_) {
    if (kv.key == fmt::kAlignmentKey) return std::uint32_t(kv.value.bits);  // checked by add_metadata
  }
  return fmt::kDefaultAlignment;
}

void GgufWriter::write(const std::string& path) const {
  const std::uint64_t align = alignment();

  // Header, metadata and tensor infos: the canonical layout puts each tensor at the padded end of the previous.
  std::string head(fmt::kMagic, sizeof fmt::kMagic);
  put_bits(head, fmt::kWriteVersion, 4);
  put_bits(head, tensors_.size(), 8);
  put_bits(head, metadata_.size(), 8);
  for (const GgufKeyValue& kv : metadata_) {
    put_string(head, kv.key);
    put_bits(head, std::uint32_t(kv.value.type), 4);
    put_value(head, kv.value);
  }
  std::uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    put_string(head, t.info.name);
    put_bits(head, t.info.ne.size(), 4);
    for (std::uint64_t extent : t.info.ne) put_bits(head, extent, 8);
    put_bits(head, t.info.type, 4);
    put_bits(head, offset, 8);
    offset += round_up(t.info.byte_size, align);
  }
  head.resize(std::size_t(round_up(head.size(), align)), '\0');

  const std::string staging = path + ".tmp";
  std::FILE* out = std::fopen(staging.c_str(), "wb");
  if (!out) fail(path, "cannot write " + staging + " (" + std::strerror(errno) + ")");
  int error = 0;  // errno of the first failure
  const auto put = [&](const void* data, std::size_t size) {
    if (error == 0 && size > 0 && std::fwrite(data, 1, size, out) != size) error = errno ? errno : EIO;
  };
  const auto pad = [&](std::size_t size) {
    static const char zeros[4096] = {};
    for (; size > 0 && error == 0; size -= std::min(size, sizeof zeros)) put(zeros, std::min(size, sizeof zeros));
  };
  put(head.data(), head.size());
  for (const Tensor& t : tensors_) {
    const std::size_t size = std::size_t(t.info.byte_size);
    put(t.data ? t.data : t.owned.data(), size);
    pad(std::size_t(round_up(size, align) - size));
  }
  if (error == 0 && std::fflush(out) != 0) error = errno ? errno : EIO;
  if (std::fclose(out) != 0 && error == 0) error = errno ? errno : EIO;
  if (error != 0) {
    std::remove(staging.c_str());
    fail(path, "cannot write " + staging + " (" + std::strerror(error) + ")");
  }
  if (std::rename(staging.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(staging.c_str());
    fail(path, "cannot rename the finished file into place (" + reason + ")");
  }
}

}  // namespace oscar::io
