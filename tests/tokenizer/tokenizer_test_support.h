// Shared helpers for the tokenizer tests: the real data's paths, cached loads of the big vocabularies, a
// scratch directory, and a minimal GGUF writer for metadata-only files.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "model/hf_tokenizer.h"
#include "model/tokenizer.h"

namespace oscar::model::test {

inline const std::string kData = OSCAR_SHARED_DATA;
inline const std::string kQwen3Dir = kData + "/tokenizers/qwen3";
inline const std::string kTinyStoriesDir = kData + "/models/tinystories-656k";
inline const std::string kTinyStoriesGguf = kTinyStoriesDir + "/TinyStories-656K-Q8_0.gguf";
inline const std::string kTok512 = kData + "/models/stories260K/tok512.bin";
inline const std::string kSampleText = kData + "/text/tinystories_sample.txt";
inline const std::string kValText = kData + "/text/tinystories_val.txt";

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

/// Qwen3's 11 MB tokenizer.json, parsed once for the whole test binary.
inline const Tokenizer& qwen3() {
  static const std::unique_ptr<Tokenizer> tokenizer = load_hf_tokenizer(kQwen3Dir);
  return *tokenizer;
}

/// A fresh directory under the system temp dir, removed with the object.
class ScratchDir {
 public:
  ScratchDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("oscar_tokenizer_" + std::string(info ? info->name() : "test") + "_" +
             std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string path() const { return path_.string(); }
  std::string write(const std::string& name, const std::string& content) const {
    const std::string file = (path_ / name).string();
    std::ofstream(file, std::ios::binary) << content;
    return file;
  }

 private:
  std::filesystem::path path_;
};

/// Writes a GGUF v3 file with metadata only (no tensors), following the format's little-endian layout.
class GgufWriter {
 public:
  void add_string(const std::string& key, const std::string& value) {
    key_header(key, kString);
    put_string(value);
  }
  void add_u32(const std::string& key, std::uint32_t value) {
    key_header(key, kUInt32);
    put(value);
  }
  void add_bool(const std::string& key, bool value) {
    key_header(key, kBool);
    put(static_cast<std::uint8_t>(value));
  }
  void add_strings(const std::string& key, const std::vector<std::string>& values) {
    array_header(key, kString, values.size());
    for (const std::string& v : values) put_string(v);
  }
  void add_i32s(const std::string& key, const std::vector<std::int32_t>& values) {
    array_header(key, kInt32, values.size());
    for (std::int32_t v : values) put(v);
  }
  void add_f32s(const std::string& key, const std::vector<float>& values) {
    array_header(key, kFloat32, values.size());
    for (float v : values) put(v);
  }
  void save(const std::string& path) const {
    std::ofstream out(path, std::ios::binary);
    out.write("GGUF", 4);
    const std::uint32_t version = 3;
    const std::uint64_t tensors = 0;
    out.write(reinterpret_cast<const char*>(&version), 4);
    out.write(reinterpret_cast<const char*>(&tensors), 8);
    out.write(reinterpret_cast<const char*>(&count_), 8);
    out << body_.str();
  }

 private:
  enum : std::uint32_t { kUInt32 = 4, kInt32 = 5, kFloat32 = 6, kBool = 7, kString = 8, kArray = 9 };
  template <class T>
  void put(T value) {
    body_.write(reinterpret_cast<const char*>(&value), sizeof value);
  }
  void put_string(const std::string& s) {
    put(static_cast<std::uint64_t>(s.size()));
    body_.write(s.data(), static_cast<std::streamsize>(s.size()));
  }
  void key_header(const std::string& key, std::uint32_t type) {
    put_string(key);
    put(type);
    ++count_;
  }
  void array_header(const std::string& key, std::uint32_t element_type, std::size_t n) {
    key_header(key, kArray);
    put(element_type);
    put(static_cast<std::uint64_t>(n));
  }
  std::ostringstream body_;
  std::uint64_t count_ = 0;
};

}  // namespace oscar::model::test
