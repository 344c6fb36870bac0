// A whole file mapped read-only (POSIX mmap), shared by the readers of model files (GGUF, safetensors) so that
// weights are read in place rather than copied. Plain C++.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace oscar::model {

class FileMapping {
 public:
  /// Maps `path`. Throws oscar::InputError("<path>: cannot open (...)" | "not a regular file" |
  /// "cannot map (...)"). An empty file maps to data() == nullptr, size() == 0.
  static std::shared_ptr<const FileMapping> open(const std::string& path);
  ~FileMapping();
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;

  const unsigned char* data() const { return static_cast<const unsigned char*>(base_); }
  std::size_t size() const { return size_; }

 private:
  FileMapping() = default;
  void* base_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace oscar::model
