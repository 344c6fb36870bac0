// Support shared by the tests that check GGUF files against an independent reader: the npm package
// @huggingface/gguf, run with node by tests/js/read_gguf.mjs (tests/io/test_gguf.cpp, tests/zoo/test_zoo.cpp).
// The package is installed on first use under $OSCAR_NPM_PREFIX, else $HOME/.cache/oscar-npm.
#pragma once

#include <sys/wait.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "io/gguf.h"
#include "io_test_support.h"

namespace oscar::test {

inline constexpr const char* kNpmPackage = "@huggingface/gguf@0.4.6";

/// The float32 values of F32 tensor bytes.
inline std::vector<float> floats_of(const io::GgufBytes& bytes) {
  std::vector<float> values(bytes.size / 4);
  std::memcpy(values.data(), bytes.data, values.size() * 4);
  return values;
}

/// A shell command's exit status (-1 if it did not exit normally) and its stdout.
struct CommandRun {
  int status = -1;
  std::string output;
};

inline CommandRun run_capturing(const std::string& command) {
  CommandRun run;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return run;
  char buffer[65536];
  while (std::size_t got = std::fread(buffer, 1, sizeof buffer, pipe)) run.output.append(buffer, got);
  const int status = ::pclose(pipe);
  run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

/// The npm prefix holding @huggingface/gguf: $OSCAR_NPM_PREFIX, else $HOME/.cache/oscar-npm. Installs the package
/// there unless that version is already installed. "" (and a test failure naming the cause) when node or npm
/// are missing or the install fails.
inline std::string gguf_npm_prefix() {
  if (run_command("command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1") != 0) {
    ADD_FAILURE() << "node and npm are needed for the independent GGUF reader (tests/js/read_gguf.mjs): install the "
                     "Debian packages nodejs and npm (scripts/setup.sh does)";
    return "";
  }
  const char* configured = std::getenv("OSCAR_NPM_PREFIX");
  const char* home = std::getenv("HOME");
  const std::string prefix = configured && *configured ? configured
                                                        : std::string(home && *home ? home : "/tmp") + "/.cache/oscar-npm";
  const std::string manifest = prefix + "/node_modules/@huggingface/gguf/package.json";
  std::ifstream in(manifest);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.find("\"version\": \"0.4.6\"") != std::string::npos) return prefix;
  const CommandRun install = run_capturing("npm install --prefix " + shell_quote(prefix) +
                                           " --no-audit --no-fund --loglevel=error " + kNpmPackage + " 2>&1");
  if (install.status != 0) {
    ADD_FAILURE() << "npm install --prefix " << prefix << " " << kNpmPackage << " failed (status " << install.status
                  << "):\n" << install.output;
    return "";
  }
  return prefix;
}

/// tests/js/read_gguf.mjs on `path`, parsed; null JSON (and a test failure) when node fails.
inline nlohmann::json read_with_node(const std::string& prefix, const std::string& path, const TempDir& scratch) {
  const std::string script = std::string(OSCAR_SOURCE_DIR) + "/tests/js/read_gguf.mjs";
  const std::string errors = scratch / "node-stderr.txt";
  const CommandRun run = run_capturing("node " + shell_quote(script) + " " + shell_quote(prefix) + " " +
                                       shell_quote(path) + " 2>" + shell_quote(errors));
  if (run.status != 0) {
    std::ifstream in(errors);
    ADD_FAILURE() << "node read_gguf.mjs " << path << " failed (status " << run.status << "):\n" << in.rdbuf();
    return nullptr;
  }
  return nlohmann::json::parse(run.output);
}

/// The JSON the node reader printed for a value of `type` (64-bit integers as decimal strings).
inline void expect_json_value(const nlohmann::json& json, const io::GgufValue& value, const std::string& where) {
  switch (value.type) {
    case io::GgufType::kUint64:
      ASSERT_TRUE(json.is_string()) << where << ": " << json;
      EXPECT_EQ(json.get<std::string>(), std::to_string(value.bits)) << where;
      break;
    case io::GgufType::kInt64:
      ASSERT_TRUE(json.is_string()) << where << ": " << json;
      EXPECT_EQ(json.get<std::string>(), std::to_string(value.as_int64(where))) << where;
      break;
    case io::GgufType::kFloat32:
    case io::GgufType::kFloat64:
      ASSERT_TRUE(json.is_number()) << where << ": " << json;
      EXPECT_EQ(json.get<double>(), value.as_double(where)) << where;
      break;
    case io::GgufType::kBool:
      ASSERT_TRUE(json.is_boolean()) << where << ": " << json;
      EXPECT_EQ(json.get<bool>(), value.as_bool(where)) << where;
      break;
    case io::GgufType::kString:
      ASSERT_TRUE(json.is_string()) << where << ": " << json;
      EXPECT_EQ(json.get<std::string>(), value.text) << where;
      break;
    case io::GgufType::kArray:
      ASSERT_TRUE(json.is_array()) << where << ": " << json;
      ASSERT_EQ(json.size(), value.elements.size()) << where;
      for (std::size_t i = 0; i < value.elements.size(); ++i) {
        expect_json_value(json[i], value.elements[i], where + "[" + std::to_string(i) + "]");
      }
      break;
    default:  // the 8..32-bit integers
      ASSERT_TRUE(json.is_number_integer()) << where << ": " << json;
      EXPECT_EQ(json.get<std::int64_t>(), value.as_int64(where)) << where;
      break;
  }
}

/// Everything the node reader saw agrees with `reader`: metadata in order with types, tensor infos, the data
/// section's start, and the values of F32 tensors (read by node itself).
inline void expect_node_agrees(const nlohmann::json& node, const io::GgufReader& reader) {
  EXPECT_EQ(node.at("version").get<std::uint32_t>(), reader.version());
  EXPECT_EQ(node.at("tensor_data_offset").get<std::string>(), std::to_string(reader.data_offset()));
  const nlohmann::json& metadata = node.at("metadata");
  ASSERT_EQ(metadata.size(), reader.metadata().size());
  for (std::size_t i = 0; i < metadata.size(); ++i) {
    const io::GgufKeyValue& kv = reader.metadata()[i];
    const nlohmann::json& entry = metadata[i];
    EXPECT_EQ(entry.at("key").get<std::string>(), kv.key) << i;
    EXPECT_EQ(entry.at("type").get<std::uint32_t>(), std::uint32_t(kv.value.type)) << kv.key;
    if (kv.value.type == io::GgufType::kArray) {
      EXPECT_EQ(entry.at("sub_type").get<std::uint32_t>(), std::uint32_t(kv.value.element_type)) << kv.key;
    }
    expect_json_value(entry.at("value"), kv.value, kv.key);
  }
  const nlohmann::json& tensors = node.at("tensors");
  ASSERT_EQ(tensors.size(), reader.tensors().size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const io::GgufTensorInfo& info = reader.tensors()[i];
    const nlohmann::json& tensor = tensors[i];
    EXPECT_EQ(tensor.at("name").get<std::string>(), info.name);
    EXPECT_EQ(tensor.at("dtype").get<std::uint32_t>(), info.type) << info.name;
    EXPECT_EQ(tensor.at("offset").get<std::string>(), std::to_string(info.offset)) << info.name;
    std::vector<std::string> ne;
    for (std::uint64_t extent : info.ne) ne.push_back(std::to_string(extent));
    EXPECT_EQ(tensor.at("shape").get<std::vector<std::string>>(), ne) << info.name;
    if (info.type == io::gguf_format::kGgmlF32) {
      const std::vector<float> expected = floats_of(reader.tensor_data(info));
      const std::vector<double> seen = tensor.at("f32").get<std::vector<double>>();
      ASSERT_EQ(seen.size(), expected.size()) << info.name;
      for (std::size_t k = 0; k < seen.size(); ++k) EXPECT_EQ(float(seen[k]), expected[k]) << info.name << "[" << k << "]";
    }
  }
}

}  // namespace oscar::test
