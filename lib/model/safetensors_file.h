// Reader for safetensors files (Hugging Face): an 8-byte little-endian header length, a JSON header naming
// every tensor's dtype, shape and byte range, then the data. Memory-mapped; tensors point into the mapping.
// Plain C++.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/model_weights.h"

namespace oscar::model {

class SafetensorsFile {
 public:
  /// Throws oscar::InputError("<path>: <problem>") for a missing file, a malformed header, an unsupported
  /// dtype (only F32, F16, BF16 are read) or a byte range outside the file.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;
  /// Tensor pointing into the mapping (WeightTensor::owner keeps the mapping alive).
  WeightTensor tensor(const std::string& name) const;

 private:
  std::string path_;
  std::shared_ptr<const void> mapping_;
  std::vector<std::pair<std::string, WeightTensor>> tensors_;
};

}  // namespace oscar::model
