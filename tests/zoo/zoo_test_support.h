// Support shared by the zoo tests: rotations calibrated from the bundled models with the real oscar-calibrate,
// running the oscar-zoo / oscar-verify binaries, and comparing rotation sets.
//
// Calibrations take a few seconds each, so each is made once per process (on first use) and kept in a cache in
// the build tree (<build>/tests/zoo-calibrations/<key>), keyed by the digest of the oscar-calibrate binary, the
// config file and the extra arguments: ctest runs every test case in its own process, and without the cache each
// would calibrate again. A new oscar-calibrate build gives new keys. Tests never write into a cached directory
// (they copy it first).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../io/gguf_test_support.h"
#include "../io/io_test_support.h"
#include "core/error.h"
#include "io/file_digest.h"
#include "io/rotation_pair.h"
#include "io/rotation_set.h"

namespace oscar::test {

namespace zoo_fs = std::filesystem;

/// The bundled calibrations the tests use.
enum class Bundled {
  kStories260K,            ///< configs/stories260K.toml: 5 layers, head_dim 8, format 1
  kStories260KPerKvHead,   ///< the same with --granularity kv-head: format 2, 4 KV heads
  kTinyStories656K,        ///< configs/tinystories-656k.toml: 2 layers, head_dim 16, format 1
};

struct Calibrated {
  std::string dir;  ///< the tag directory: k_/v_rotation_*.pt and calibration.json
  std::string tag;  ///< its name, e.g. "seq20000_prompt40_group8"
};

inline const std::string& source_dir() {
  static const std::string dir = OSCAR_SOURCE_DIR;
  return dir;
}

inline std::string tinystories_gguf() {
  return std::string(OSCAR_SHARED_DATA) + "/models/tinystories-656k/TinyStories-656K-Q8_0.gguf";
}

inline std::string read_file_text(const std::string& path) {
  const std::vector<std::uint8_t> bytes = read_bytes(path);
  return std::string(bytes.begin(), bytes.end());
}

/// A binary's exit status, stdout and stderr.
struct ToolRun {
  int status = -1;
  std::string out;
  std::string err;
};

/// Runs `binary args...` from the repository root (the configs' relative paths start there).
/// A binary that is not built is a test failure naming the ninja target (the test executables do not depend on
/// the tools: build them with `ninja oscar-zoo oscar-calibrate oscar-verify`).
inline ToolRun run_tool(const std::string& binary, const std::vector<std::string>& args) {
  static int counter = 0;
  if (!zoo_fs::exists(binary)) {
    ToolRun missing;
    missing.err = binary + " is not built (ninja " + zoo_fs::path(binary).filename().string() + ")";
    ADD_FAILURE() << missing.err;
    return missing;
  }
  const std::string errors = (zoo_fs::temp_directory_path() /
                              ("oscar-zoo-test-stderr-" + std::to_string(::getpid()) + "-" + std::to_string(counter++)))
                                 .string();
  std::string command = "cd " + shell_quote(source_dir()) + " && " + shell_quote(binary);
  for (const std::string& arg : args) command += " " + shell_quote(arg);
  command += " 2>" + shell_quote(errors);
  const CommandRun run = run_capturing(command);
  ToolRun result;
  result.status = run.status;
  result.out = run.output;
  result.err = read_file_text(errors);
  std::error_code ignored;
  zoo_fs::remove(errors, ignored);
  return result;
}

inline ToolRun run_zoo(const std::vector<std::string>& args) { return run_tool(OSCAR_ZOO_BIN, args); }

/// The one directory inside `dir` (oscar-calibrate writes OUT/<tag>/).
inline std::string only_subdirectory(const std::string& dir) {
  std::vector<std::string> found;
  for (const auto& entry : zoo_fs::directory_iterator(dir)) {
    if (entry.is_directory()) found.push_back(entry.path().string());
  }
  if (found.size() != 1) throw std::runtime_error(dir + ": expected one tag directory, found " + std::to_string(found.size()));
  return found.front();
}

inline bool complete_calibration(const std::string& out) {
  try {
    const std::string tag_dir = only_subdirectory(out);
    return zoo_fs::exists(zoo_fs::path(tag_dir) / "calibration.json") &&
           !io::find_rotation_file(tag_dir, "k_rotation_").empty() && !io::find_rotation_file(tag_dir, "v_rotation_").empty();
  } catch (const std::exception&) {
    return false;
  }
}

/// Calibrates once per process (and once per oscar-calibrate build, through the cache); throws when the tool fails.
inline const Calibrated& calibrated(Bundled which) {
  static std::map<Bundled, Calibrated> done;
  const auto found = done.find(which);
  if (found != done.end()) return found->second;

  std::string config;
  std::vector<std::string> extra;
  switch (which) {
    case Bundled::kStories260K: config = "configs/stories260K.toml"; break;
    case Bundled::kStories260KPerKvHead: config = "configs/stories260K.toml"; extra = {"--granularity", "kv-head"}; break;
    case Bundled::kTinyStories656K: config = "configs/tinystories-656k.toml"; break;
  }
  std::string identity = io::sha256_file(OSCAR_CALIBRATE_BIN) + "\n" + io::sha256_file(source_dir() + "/" + config);
  for (const std::string& arg : extra) identity += "\n" + arg;
  const zoo_fs::path root = zoo_fs::path(OSCAR_CALIBRATE_BIN).parent_path().parent_path() / "tests" / "zoo-calibrations";
  const zoo_fs::path out = root / io::sha256_bytes(identity).substr(0, 24);

  if (!complete_calibration(out.string())) {
    zoo_fs::create_directories(root);
    std::error_code ignored;
    zoo_fs::remove_all(out, ignored);  // an incomplete one (cannot happen with the rename below, but cheap)
    const zoo_fs::path scratch = root / ("making-" + std::to_string(::getpid()) + "-" + out.filename().string());
    zoo_fs::remove_all(scratch, ignored);
    std::vector<std::string> args = {"--config", config, "--out", scratch.string(), "-q"};
    args.insert(args.end(), extra.begin(), extra.end());
    const ToolRun run = run_tool(OSCAR_CALIBRATE_BIN, args);
    if (run.status != 0 || !complete_calibration(scratch.string())) {
      throw std::runtime_error("oscar-calibrate --config " + config + " failed (status " + std::to_string(run.status) +
                               "):\n" + run.out + run.err);
    }
    zoo_fs::rename(scratch, out, ignored);  // another process (ctest -j) may have won: then use its result
    zoo_fs::remove_all(scratch, ignored);
    if (!complete_calibration(out.string())) throw std::runtime_error(out.string() + ": calibration cache not usable");
  }
  const std::string tag_dir = only_subdirectory(out.string());
  return done[which] = Calibrated{tag_dir, zoo_fs::path(tag_dir).filename().string()};
}

/// The .pt pair of a calibration, as the library reads it.
inline io::RotationPair pt_pair(const Calibrated& calibration) { return io::read_rotation_pair(calibration.dir); }

/// Copies the files of `from` (not recursively) into `to` (created).
inline void copy_directory_files(const std::string& from, const std::string& to) {
  zoo_fs::create_directories(to);
  for (const auto& entry : zoo_fs::directory_iterator(from)) {
    if (entry.is_regular_file()) zoo_fs::copy_file(entry.path(), zoo_fs::path(to) / entry.path().filename());
  }
}

/// Every field of two rotation sets is identical (floats bit for bit).
inline void expect_same_set(const io::RotationSet& a, const io::RotationSet& b, const std::string& what) {
  EXPECT_EQ(a.format_version, b.format_version) << what;
  EXPECT_EQ(a.objective, b.objective) << what;
  EXPECT_EQ(a.source_grouping, b.source_grouping) << what;
  ASSERT_EQ(a.layers.size(), b.layers.size()) << what;
  for (std::size_t i = 0; i < a.layers.size(); ++i) {
    const io::LayerRotation &x = a.layers[i], &y = b.layers[i];
    EXPECT_EQ(x.layer_id, y.layer_id) << what;
    EXPECT_EQ(x.num_heads, y.num_heads) << what;
    EXPECT_EQ(x.head_dim, y.head_dim) << what;
    ASSERT_EQ(x.rotation.size(), y.rotation.size()) << what;
    ASSERT_EQ(x.eigenvalues.size(), y.eigenvalues.size()) << what;
    EXPECT_EQ(std::memcmp(x.rotation.data(), y.rotation.data(), x.rotation.size() * sizeof(float)), 0) << what << " layer " << x.layer_id;
    EXPECT_EQ(std::memcmp(x.eigenvalues.data(), y.eigenvalues.data(), x.eigenvalues.size() * sizeof(float)), 0)
        << what << " layer " << x.layer_id;
  }
}

inline void expect_same_pair(const io::RotationPair& a, const io::RotationPair& b, const std::string& what) {
  expect_same_set(a.key, b.key, what + " (keys)");
  expect_same_set(a.value, b.value, what + " (values)");
}

/// The tool's stderr is one line "oscar-zoo: error: <path>: ..." (the message starts with the path).
inline void expect_one_line_error_naming(const ToolRun& run, const std::string& path) {
  const std::string prefix = "oscar-zoo: error: " + path + ": ";
  EXPECT_EQ(run.err.rfind(prefix, 0), 0u) << run.err;
  ASSERT_FALSE(run.err.empty());
  EXPECT_EQ(run.err.find('\n'), run.err.size() - 1) << "one line: " << run.err;
}

}  // namespace oscar::test
