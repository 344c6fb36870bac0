// RotationZoo files: the real reference files, byte-exact rewriting, Python interoperability, bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/rotation_set.h"
#include "io_test_support.h"

namespace oscar::io {
namespace {

namespace fs = std::filesystem;
using test::read_bytes;
using test::read_torch_record;
using test::TempDir;
using test::write_bytes;

const std::string kZooDir = std::string(OSCAR_SHARED_DATA) + "/rotationzoo/qwen3-4b-thinking-2507/";

struct ZooFile {
  const char* name;
  const char* objective;
};
constexpr ZooFile kZooFiles[] = {{"k_rotation_qqt_r_h_pbr.pt", "qqt_r_h_pbr"}, {"v_rotation_sst_r_h_pbr.pt", "sst_r_h_pbr"}};

void expect_input_error(const std::function<void()>& action, const std::string& path, const std::string& fragment = "") {
  try {
    action();
    ADD_FAILURE() << "no error for " << path;
  } catch (const InputError& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.rfind(path + ": ", 0), 0u) << message;  // starts with the file name
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

// The formula of torch_roundtrip.py: exact in float32.
RotationSet formula_set(int format_version, int heads, int d, int num_layers, const std::string& objective) {
  RotationSet set;
  set.format_version = format_version;
  set.objective = objective;
  set.source_grouping = format_version == 1 ? rotation_format::kLayerGrouping : rotation_format::kPerKvHeadGrouping;
  for (int l = 0; l < num_layers; ++l) {
    LayerRotation layer;
    layer.layer_id = l;
    layer.num_heads = heads;
    layer.head_dim = d;
    for (int h = 0; h < heads; ++h) {
      for (int i = 0; i < d; ++i) {
        for (int j = 0; j < d; ++j) layer.rotation.push_back(float((7 * l + 3 * h + 5 * i + j) % 11 - 5) / 8.0f);
      }
      for (int i = 0; i < d; ++i) layer.eigenvalues.push_back(float(l) + float(h) / 2.0f + float(i) / 8.0f);
    }
    set.layers.push_back(std::move(layer));
  }
  return set;
}

void expect_same_set(const RotationSet& actual, const RotationSet& expected) {
  EXPECT_EQ(actual.format_version, expected.format_version);
  EXPECT_EQ(actual.objective, expected.objective);
  EXPECT_EQ(actual.source_grouping, expected.source_grouping);
  ASSERT_EQ(actual.layers.size(), expected.layers.size());
  for (std::size_t i = 0; i < actual.layers.size(); ++i) {
    EXPECT_EQ(actual.layers[i].layer_id, expected.layers[i].layer_id);
    EXPECT_EQ(actual.layers[i].num_heads, expected.layers[i].num_heads);
    EXPECT_EQ(actual.layers[i].head_dim, expected.layers[i].head_dim);
    EXPECT_EQ(actual.layers[i].rotation, expected.layers[i].rotation) << "layer " << i;
    EXPECT_EQ(actual.layers[i].eigenvalues, expected.layers[i].eigenvalues) << "layer " << i;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The reference files
// ---------------------------------------------------------------------------------------------------------

TEST(RotationSet, ReadsTheZooFiles) {
  for (const ZooFile& zoo : kZooFiles) {
    SCOPED_TRACE(zoo.name);
    const RotationSet set = read_rotation_set(kZooDir + zoo.name);
    EXPECT_EQ(set.format_version, 1);
    EXPECT_EQ(set.objective, zoo.objective);
    EXPECT_EQ(set.source_grouping, "layer");
    ASSERT_EQ(set.layers.size(), 36u);
    for (std::size_t l = 0; l < set.layers.size(); ++l) {
      const LayerRotation& layer = set.layers[l];
      ASSERT_EQ(layer.layer_id, int(l));
      ASSERT_EQ(layer.num_heads, 1);
      ASSERT_EQ(layer.head_dim, 128);
      ASSERT_EQ(layer.rotation.size(), 128u * 128u);
      ASSERT_EQ(layer.eigenvalues.size(), 128u);
      // R Rᵀ = I: rows are orthonormal.
      double worst = 0.0;
      const float* r = layer.rotation.data();
      for (int i = 0; i < 128; ++i) {
        for (int j = 0; j < 128; ++j) {
          double dot = 0.0;
          for (int k = 0; k < 128; ++k) dot += double(r[i * 128 + k]) * double(r[j * 128 + k]);
          worst = std::max(worst, std::abs(dot - (i == j ? 1.0 : 0.0)));
        }
      }
      EXPECT_LT(worst, 1e-5) << "layer " << l;
      EXPECT_TRUE(std::is_sorted(layer.eigenvalues.begin(), layer.eigenvalues.end())) << "layer " << l;
    }
  }
}

TEST(RotationSet, RewritesTheZooFilesByteForByte) {
  // Same file name (the archive root is the stem), same content: the whole file is identical to what
  // Python's torch.save wrote, serialization id included.
  TempDir dir;
  for (const ZooFile& zoo : kZooFiles) {
    SCOPED_TRACE(zoo.name);
    const std::string copy = dir / zoo.name;
    write_rotation_set(copy, read_rotation_set(kZooDir + zoo.name));
    const std::vector<std::uint8_t> ours = read_bytes(copy);
    const std::vector<std::uint8_t> reference = read_bytes(kZooDir + zoo.name);
    ASSERT_EQ(ours.size(), reference.size());
    const auto mismatch = std::mismatch(ours.begin(), ours.end(), reference.begin());
    EXPECT_TRUE(mismatch.first == ours.end()) << "first difference at byte " << (mismatch.first - ours.begin());
  }
}

// ---------------------------------------------------------------------------------------------------------
// Our files in Python, Python's files here
// ---------------------------------------------------------------------------------------------------------

// Parses dump-rotation's text (values as float.hex) back into a RotationSet.
RotationSet parse_python_dump(const std::string& path) {
  std::ifstream in(path);
  RotationSet set;
  std::string word;
  in >> word >> set.format_version >> word >> set.objective >> word >> set.source_grouping;
  while (in >> word) {
    if (word != "layer") throw std::runtime_error("bad dump line " + word);
    LayerRotation layer;
    in >> layer.layer_id >> layer.num_heads >> layer.head_dim;
    const std::size_t d = std::size_t(layer.head_dim);
    const std::size_t heads = std::size_t(layer.num_heads);
    for (std::size_t i = 0; i < heads * d * d && in >> word; ++i) layer.rotation.push_back(std::strtof(word.c_str(), nullptr));
    for (std::size_t i = 0; i < heads * d && in >> word; ++i) layer.eigenvalues.push_back(std::strtof(word.c_str(), nullptr));
    set.layers.push_back(std::move(layer));
  }
  return set;
}

TEST(RotationSet, PythonLoadsWhatWeWrite) {
  TempDir dir;
  const std::vector<std::pair<std::string, RotationSet>> sets = {
      {"layer.pt", formula_set(1, 1, 16, 5, "qqt_r_h_pbr")},
      {"per_head.pt", formula_set(2, 4, 8, 3, "sst_r_h_pbr")},
      {"zoo.pt", read_rotation_set(kZooDir + kZooFiles[0].name)},
  };
  std::vector<std::string> args = {"dump-rotation"};
  for (const auto& [name, set] : sets) {
    write_rotation_set(dir / name, set);
    args.push_back(dir / name);
    args.push_back(dir / (name + ".txt"));
  }
  const test::PythonRun run = test::run_torch_roundtrip(args);
  ASSERT_EQ(run.status, 0) << run.output;
  for (const auto& [name, set] : sets) {
    SCOPED_TRACE(name);
    expect_same_set(parse_python_dump(dir / (name + ".txt")), set);
    expect_same_set(read_rotation_set(dir / name), set);  // and our own reader round-trips
  }
}

TEST(RotationSet, PicklesLikePythonTorchSave) {
  // Python builds the same dict from the formula and torch.saves it; the pickles must be identical byte
  // for byte, and so must every storage. 40 layers push the memo past 256 (LONG_BINPUT).
  TempDir dir;
  struct Case {
    int format_version, heads, d, layers;
    const char* objective;
  };
  const std::vector<Case> cases = {{1, 1, 8, 3, "qqt_r_h_pbr"}, {2, 2, 4, 3, "sst_r_h_pbr"}, {1, 1, 16, 40, "hadamard"}};
  auto python_file = [&](const Case& c) { return dir / ("python_" + std::to_string(&c - cases.data()) + ".pt"); };
  std::vector<std::string> args = {"save-formula-rotation"};
  for (const Case& c : cases) {
    for (const std::string& arg : {python_file(c), std::to_string(c.format_version), std::to_string(c.heads),
                                   std::to_string(c.d), std::to_string(c.layers), std::string(c.objective)}) {
      args.push_back(arg);
    }
  }
  const test::PythonRun run = test::run_torch_roundtrip(args);
  ASSERT_EQ(run.status, 0) << run.output;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.objective);
    const std::string theirs = python_file(c);
    const std::string ours = dir / ("ours_" + std::to_string(&c - cases.data()) + ".pt");
    write_rotation_set(ours, formula_set(c.format_version, c.heads, c.d, c.layers, c.objective));
    EXPECT_EQ(read_torch_record(ours, "data.pkl"), read_torch_record(theirs, "data.pkl"));
    for (int key = 0; key < 2 * c.layers; ++key) {
      const std::string name = "data/" + std::to_string(key);
      EXPECT_EQ(read_torch_record(ours, name), read_torch_record(theirs, name)) << name;
    }
  }
}

TEST(RotationSet, ReadsPythonVariants) {
  TempDir dir;
  const test::PythonRun run = test::run_torch_roundtrip({"save-rotations", dir.path()});
  ASSERT_EQ(run.status, 0) << run.output;

  // String layer keys and float64 tensors (converted to float).
  expect_same_set(read_rotation_set(dir / "str_keys_fp64.pt"), formula_set(1, 1, 8, 3, "qqt_r_h_pbr"));
  expect_same_set(read_rotation_set(dir / "per_head.pt"), formula_set(2, 2, 4, 3, "sst_r_h_pbr"));

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"bad_nonsquare", "layer 1: rotation has shape [8, 4], expected square"},
      {"bad_missing_rotation", "layer 2: missing 'rotation'"},
      {"bad_bf16", "layer 0: rotation has dtype bfloat16, expected float32 or float64"},
      {"bad_eigen_shape", "layer 1: eigenvalues have shape [7], expected [d] = [8]"},
      {"bad_layers_list", "'layers' is a list, expected a dict"},
      {"bad_version", "format_version 3 is not supported"},
      {"bad_inconsistent", "layer 2: head_dim 4 differs from the 8 of layer 0"},
      {"bad_root_tensor", "top level is a tensor, expected a dict"},
      {"bad_layer_key", "layer key 'abc' is not a layer number"},
      {"bad_transposed", "layer 0: rotation: not C-contiguous"},
      {"bad_grouping", "source_grouping 'per_kv_head' does not match format_version 1"},
      {"bad_no_objective", "missing 'objective'"},
      {"bad_layer_id", "layer 1: 'layer_id' does not match its key"},
  };
  for (const auto& [name, message] : bad) {
    const std::string path = dir / (name + ".pt");
    expect_input_error([&] { read_rotation_set(path); }, path, message);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Malformed files and bad requests
// ---------------------------------------------------------------------------------------------------------

TEST(RotationSet, TruncatedZooFilesAreInputErrors) {
  TempDir dir;
  const std::vector<std::uint8_t> whole = read_bytes(kZooDir + kZooFiles[0].name);
  const std::string path = dir / kZooFiles[0].name;
  for (std::size_t length : {std::size_t(0), std::size_t(21), std::size_t(100), std::size_t(5000), std::size_t(70000),
                             whole.size() / 2, whole.size() - 6000, whole.size() - 100, whole.size() - 22, whole.size() - 1}) {
    SCOPED_TRACE(length);
    write_bytes(path, std::vector<std::uint8_t>(whole.begin(), whole.begin() + std::ptrdiff_t(length)));
    expect_input_error([&] { read_rotation_set(path); }, path);
  }
}

TEST(RotationSet, CorruptedZooFilesAreInputErrors) {
  TempDir dir;
  const std::vector<std::uint8_t> whole = read_bytes(kZooDir + kZooFiles[1].name);
  const std::string path = dir / "corrupt.pt";
  // One flipped byte in the pickle, in a storage, in the central directory: each caught (CRC or structure).
  for (std::size_t position : {std::size_t(0x100), std::size_t(0x2000), whole.size() - 3000}) {
    std::vector<std::uint8_t> bytes = whole;
    bytes[position] ^= 0x40;
    write_bytes(path, bytes);
    expect_input_error([&] { read_rotation_set(path); }, path);
  }
  std::mt19937 random(11);
  std::vector<std::uint8_t> garbage(5000);
  for (std::uint8_t& byte : garbage) byte = std::uint8_t(random());
  write_bytes(path, garbage);
  expect_input_error([&] { read_rotation_set(path); }, path, "not a zip archive");
}

TEST(RotationSet, WriterRefusesInconsistentSets) {
  TempDir dir;
  const std::string path = dir / "never.pt";
  RotationSet set = formula_set(1, 1, 8, 2, "qqt_r_h_pbr");
  set.layers[1].rotation.pop_back();
  EXPECT_THROW(write_rotation_set(path, set), std::invalid_argument);
  set = formula_set(1, 1, 8, 2, "qqt_r_h_pbr");
  std::swap(set.layers[0], set.layers[1]);
  EXPECT_THROW(write_rotation_set(path, set), std::invalid_argument);
  set = formula_set(2, 2, 8, 2, "qqt_r_h_pbr");
  set.source_grouping = "layer";
  EXPECT_THROW(write_rotation_set(path, set), std::invalid_argument);
  set.layers.clear();
  set.source_grouping = "per_kv_head";
  EXPECT_THROW(write_rotation_set(path, set), std::invalid_argument);
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(RotationSet, RoundTripsWithGapsInLayerIds) {
  TempDir dir;
  RotationSet set = formula_set(2, 2, 4, 4, "ktk_plain");
  set.layers.erase(set.layers.begin() + 1);  // layers 0, 2, 3
  const std::string path = dir / "gaps.pt";
  write_rotation_set(path, set);
  expect_same_set(read_rotation_set(path), set);
}

}  // namespace
}  // namespace oscar::io
