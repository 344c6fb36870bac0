// The model runner's view of a GGUF file (llama.cpp's model container): metadata getters, the tensor directory
// with shapes outermost first, and tensor data dequantised to float32 (F32, F16, BF16, Q8_0). Parsing and
// validation of the format (v2/v3, metadata, tensor infos, alignment, data ranges) are oscar::io::GgufReader's
// (lib/io/gguf.h); this class only maps them onto what the model loader and the GGUF tokenizer use. The file is
// memory-mapped; nothing is copied until a tensor is dequantised. Plain C++.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace oscar::model {

/// ggml tensor types this reader dequantises (ggml's numbering, as io::gguf_format::kGgml*).
enum class GgmlType : std::uint32_t { kF32 = 0, kF16 = 1, kQ8_0 = 8, kBF16 = 30 };

struct GgufTensorInfo {
  std::string name;
  std::uint32_t type = 0;              ///< ggml type id (may be one this reader cannot dequantise)
  std::vector<std::int64_t> shape;     ///< outermost first (GGUF stores ne[] innermost first; reversed here)
  std::uint64_t offset = 0;            ///< from the start of the data section
  std::int64_t numel() const;          ///< 1 for a tensor with no dimensions, 0 when an extent is 0
};

class GgufFile {
 public:
  /// Opens the file with io::GgufReader, which throws oscar::InputError("<path>: <problem>") for a missing file,
  /// bad magic, an unsupported version, truncation, a tensor of unknown size or outside the file, ...
  explicit GgufFile(const std::string& path);
  ~GgufFile();
  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;

  const std::string& path() const;
  int version() const;

  /// Metadata. Getters throw InputError("<path>: missing metadata <key>" / "<path>: metadata <key> is not a
  /// <type> (it is <type>)"). Integer getters accept any GGUF integer type (get_int_array also bools);
  /// get_float and get_float_array accept float32/float64 and integers.
  bool has(const std::string& key) const;
  std::vector<std::string> keys() const;  ///< in file order
  std::string get_string(const std::string& key) const;
  std::int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_string_array(const std::string& key) const;
  std::vector<std::int64_t> get_int_array(const std::string& key) const;
  std::vector<float> get_float_array(const std::string& key) const;
  /// Same with a default when the key is absent.
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::int64_t get_int(const std::string& key, std::int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;

  /// In file order.
  const std::vector<GgufTensorInfo>& tensors() const;
  /// nullptr when absent.
  const GgufTensorInfo* find_tensor(const std::string& name) const;
  /// The tensor (one of this file's, found by name when `tensor` is a copy) as float32 values, C-contiguous in
  /// `shape`. Throws InputError naming the tensor and its type when the type is not F32/F16/BF16/Q8_0.
  std::vector<float> dequantize(const GgufTensorInfo& tensor) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// "F32", "F16", "Q8_0", "BF16", ... or "type <n>" (io::ggml_type_name).
std::string ggml_type_name(std::uint32_t type);

}  // namespace oscar::model
