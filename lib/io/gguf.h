// GGUF (llama.cpp's model container), read and written byte for byte: metadata of every type, tensor infos and
// raw tensor bytes, with no interpretation of what they mean. Little-endian, as llama.cpp's gguf.cpp and
// gguf-py write it:
//
//   "GGUF", uint32 version, uint64 tensor_count, uint64 kv_count,
//   kv_count × { string key, uint32 value type, value },
//   tensor_count × { string name, uint32 n_dims, n_dims × uint64 ne (innermost first), uint32 ggml type,
//                    uint64 offset (from the start of the data section) },
//   zero padding to a multiple of the alignment, then the data section.
//
// A string is uint64 length + bytes (no terminator); an array is uint32 element type + uint64 count + elements
// (arrays of arrays allowed). The alignment is the uint32 metadata key general.alignment (default 32); every
// tensor offset is a multiple of it.
//
// The reader (GgufReader) maps the file, keeps metadata in file order with each value's exact type, and hands
// out tensor bytes in place. The writer (GgufWriter) writes version 3 in the canonical layout of llama.cpp's
// writers: tensors in the order added, each followed by zero padding to the alignment. So reading a canonical
// file and writing back every key and tensor in order reproduces it byte for byte (for version 3 files).
//
// oscar::model::GgufFile (lib/model) is the model runner's reader that dequantises weights; this one is for
// tools that copy and extend GGUF files (rotation files, baking rotations into a model).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace oscar::io {

/// The constants of the file format, in one place.
namespace gguf_format {
inline constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
inline constexpr std::uint32_t kOldestReadVersion = 2;  ///< version 1 (32-bit counts) is not read
inline constexpr std::uint32_t kWriteVersion = 3;        ///< also the newest version read
inline constexpr const char* kAlignmentKey = "general.alignment";  ///< a uint32
inline constexpr std::uint32_t kDefaultAlignment = 32;
inline constexpr std::uint32_t kMaxDims = 4;    ///< ggml's GGML_MAX_DIMS
/// Arrays nested deeper than this are rejected (llama.cpp reads no nested arrays; gguf-py writes them).
inline constexpr int kMaxArrayNesting = 8;

/// ggml tensor types whose byte size is known: `block_bytes` bytes per `block_elements` elements along ne[0].
struct GgmlTypeLayout {
  std::uint32_t id;
  const char* name;
  std::uint32_t block_elements;
  std::uint32_t block_bytes;
};
inline constexpr GgmlTypeLayout kGgmlTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},      {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},      {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},        {30, "BF16", 1, 2},
};
inline constexpr std::uint32_t kGgmlF32 = 0;
inline constexpr std::uint32_t kGgmlF16 = 1;
inline constexpr std::uint32_t kGgmlQ8_0 = 8;
inline constexpr std::uint32_t kGgmlBF16 = 30;
}  // namespace gguf_format

/// GGUF metadata value types (the file's numbering).
enum class GgufType : std::uint32_t {
  kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5, kFloat32 = 6, kBool = 7,
  kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11, kFloat64 = 12,
};

/// "uint8", ..., "float64"; "type <n>" for a number that is no GgufType.
std::string gguf_type_name(GgufType type);

/// The layout of ggml type `id`, nullptr when its size is unknown here.
const gguf_format::GgmlTypeLayout* find_ggml_type(std::uint32_t id);
/// "F32", "Q8_0", ...; "type <n>" when unknown.
std::string ggml_type_name(std::uint32_t id);
/// Bytes of a tensor of ggml type `id` with extents `ne` (innermost first; no extents: one element).
/// Throws std::invalid_argument("tensor <name> has ggml type <n> of unknown size" | "tensor <name> of type <T> has
/// ne[0] = <k>, not a multiple of the block size <b>" | "tensor <name> is too large"); the reader turns it into
/// an InputError naming the file.
std::uint64_t ggml_tensor_bytes(const std::string& name, std::uint32_t id, const std::vector<std::uint64_t>& ne);

/// One metadata value of any GGUF type, holding its exact type and bytes so that a copy writes back identically
/// (scalars are kept as their raw little-endian bits: NaN payloads and -0.0 survive). Arrays hold elements of
/// one type, which may itself be kArray (nested arrays).
struct GgufValue {
  GgufType type = GgufType::kUint8;
  std::uint64_t bits = 0;                    ///< numeric and bool types: the value's bytes, zero-extended
  std::string text;                          ///< kString: the bytes (UTF-8 by convention, not checked)
  GgufType element_type = GgufType::kUint8;  ///< kArray
  std::vector<GgufValue> elements;           ///< kArray: each of type element_type

  static GgufValue uint8(std::uint8_t v);
  static GgufValue int8(std::int8_t v);
  static GgufValue uint16(std::uint16_t v);
  static GgufValue int16(std::int16_t v);
  static GgufValue uint32(std::uint32_t v);
  static GgufValue int32(std::int32_t v);
  static GgufValue uint64(std::uint64_t v);
  static GgufValue int64(std::int64_t v);
  static GgufValue float32(float v);
  static GgufValue float64(double v);
  static GgufValue boolean(bool v);
  static GgufValue string(std::string v);
  /// Throws std::invalid_argument when an element is not of `element_type` (or nested arrays disagree).
  static GgufValue array(GgufType element_type, std::vector<GgufValue> elements);
  static GgufValue string_array(const std::vector<std::string>& values);
  static GgufValue float32_array(const std::vector<float>& values);
  static GgufValue int32_array(const std::vector<std::int32_t>& values);

  bool is_integer() const;  ///< one of the eight integer types (not bool)
  bool is_float() const;    ///< float32 or float64

  /// Typed getters. `what` names the value in the error, e.g. "model.gguf: metadata general.name"; a mismatch
  /// throws oscar::InputError("<what> is not a <type> (it is <actual type>)").
  std::string as_string(const std::string& what) const;
  /// Any integer type; a uint64 above INT64_MAX throws "<what> is out of range".
  std::int64_t as_int64(const std::string& what) const;
  /// Any unsigned integer type, or a non-negative signed one.
  std::uint64_t as_uint64(const std::string& what) const;
  /// float32, float64 or any integer type.
  double as_double(const std::string& what) const;
  bool as_bool(const std::string& what) const;
  std::vector<std::string> as_string_array(const std::string& what) const;
  /// Arrays of any integer type.
  std::vector<std::int64_t> as_int64_array(const std::string& what) const;
  /// Arrays of float32 (exact) or float64 (rounded to float).
  std::vector<float> as_float_array(const std::string& what) const;
  std::vector<double> as_double_array(const std::string& what) const;

  /// Same type and same bytes (so a NaN equals itself when its bits do).
  bool operator==(const GgufValue& other) const;
  bool operator!=(const GgufValue& other) const { return !(*this == other); }
};

struct GgufKeyValue {
  std::string key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;
  std::uint32_t type = gguf_format::kGgmlF32;  ///< ggml type id
  std::vector<std::uint64_t> ne;               ///< extents, innermost first, as in the file (n_dims of them)
  std::uint64_t offset = 0;                    ///< from the start of the data section
  std::uint64_t byte_size = 0;                 ///< from the type and extents
  std::uint64_t numel() const;
};

/// Tensor bytes inside a mapped file, valid while the reader lives.
struct GgufBytes {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
};

class GgufReader {
 public:
  /// Maps and checks the whole file. Throws oscar::InputError("<path>: <problem>") for a missing file, bad magic,
  /// an unsupported version, truncation anywhere (every count is checked against the bytes that remain before
  /// anything is allocated), an unknown value type, a duplicate key or tensor name, a bad general.alignment,
  /// more than kMaxDims dimensions, a ggml type of unknown size, a misaligned tensor offset, tensor data outside
  /// the file or overlapping another tensor.
  explicit GgufReader(const std::string& path);
  ~GgufReader();
  GgufReader(GgufReader&&) noexcept;
  GgufReader& operator=(GgufReader&&) noexcept;

  const std::string& path() const;
  std::uint32_t version() const;
  std::uint32_t alignment() const;
  std::uint64_t data_offset() const;  ///< start of the data section in the file
  std::uint64_t file_size() const;

  /// Metadata in file order.
  const std::vector<GgufKeyValue>& metadata() const;
  /// nullptr when absent.
  const GgufValue* find(const std::string& key) const;
  /// Throws InputError("<path>: missing metadata <key>").
  const GgufValue& value(const std::string& key) const;
  /// value(key).as_*("<path>: metadata <key>").
  std::string get_string(const std::string& key) const;
  std::int64_t get_int64(const std::string& key) const;
  std::uint64_t get_uint64(const std::string& key) const;
  double get_double(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<std::int64_t> get_int64_array(const std::string& key) const;
  std::vector<float> get_float_array(const std::string& key) const;

  /// Tensor infos in file order.
  const std::vector<GgufTensorInfo>& tensors() const;
  /// nullptr when absent.
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  /// The tensor's bytes in the mapping (`tensor` must come from this reader).
  GgufBytes tensor_data(const GgufTensorInfo& tensor) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Builds a GGUF version 3 file: metadata and tensors in the order added. The alignment is the value of
/// general.alignment when it is among the metadata (a uint32 power of two), else 32. Mistakes of the caller
/// (duplicate key or tensor name, a byte count that disagrees with the type and extents, an unknown ggml type)
/// throw std::invalid_argument when added.
class GgufWriter {
 public:
  void add_metadata(const std::string& key, GgufValue value);
  /// The tensor's bytes, owned by the writer.
  void add_tensor(const std::string& name, std::uint32_t ggml_type, std::vector<std::uint64_t> ne,
                  std::vector<std::uint8_t> bytes);
  /// The tensor's bytes, borrowed: they must stay valid until write() returns (e.g. GgufReader::tensor_data of
  /// a reader that outlives the writer), so large tensors are copied without a copy in memory.
  void add_tensor_view(const std::string& name, std::uint32_t ggml_type, std::vector<std::uint64_t> ne,
                       const void* data, std::size_t size);

  /// Writes "<path>.tmp" and renames it over `path`, so no partial file is ever left under `path`. The bytes
  /// depend only on what was added. Throws oscar::InputError("<path>: cannot write (...)") on I/O failure.
  void write(const std::string& path) const;

 private:
  struct Tensor {
    GgufTensorInfo info;
    std::vector<std::uint8_t> owned;
    const std::uint8_t* data = nullptr;
  };
  void add(const std::string& name, std::uint32_t ggml_type, std::vector<std::uint64_t> ne, std::size_t size,
           std::vector<std::uint8_t> owned, const void* data);
  std::uint32_t alignment() const;

  std::vector<GgufKeyValue> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace oscar::io
