// Rotations in GGUF (lib/io/rotation_gguf.h, reference doc §7) with rotations calibrated from the bundled models:
// lossless .pt → GGUF → .pt through oscar-zoo, the tensor and metadata convention (Rᵀ stored, ne {d, d[, Hkv]}),
// agreement with an independent reader (@huggingface/gguf under node), baking into the TinyStories-656K GGUF
// without touching the base, and rejection of truncated or corrupt rotation files.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/version.h"
#include "io/gguf.h"
#include "io/rotation_gguf.h"
#include "io/rotation_pair.h"
#include "io/rotation_set.h"
#include "zoo_test_support.h"

namespace oscar::test {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

const Calibrated& stories() { return calibrated(Bundled::kStories260K); }
const Calibrated& stories_per_head() { return calibrated(Bundled::kStories260KPerKvHead); }
const Calibrated& tiny() { return calibrated(Bundled::kTinyStories656K); }

/// The standalone rotation GGUF of a calibration, written by the library.
std::string write_standalone(const Calibrated& calibration, const TempDir& dir, const std::string& name) {
  const std::string path = dir / name;
  io::write_rotation_gguf(path, pt_pair(calibration), {calibration.tag, 0.96, 0.92});
  return path;
}

// ----- 1. .pt → GGUF → .pt through oscar-zoo ------------------------------------------------------------------

void expect_round_trip(const Calibrated& calibration) {
  TempDir dir;
  const std::string gguf = dir / "x.gguf", back = dir / "back";
  const ToolRun to_gguf = run_zoo({"convert", calibration.dir, gguf});
  ASSERT_EQ(to_gguf.status, 0) << to_gguf.out << to_gguf.err;
  EXPECT_FALSE(fs::exists(gguf + ".tmp"));
  const ToolRun to_pt = run_zoo({"convert", gguf, back});
  ASSERT_EQ(to_pt.status, 0) << to_pt.out << to_pt.err;
  for (const char* prefix : {"k_rotation_", "v_rotation_"}) {
    const std::string original = io::find_rotation_file(calibration.dir, prefix);
    const std::string copy = io::find_rotation_file(back, prefix);
    EXPECT_EQ(fs::path(copy).filename(), fs::path(original).filename());
    const Bytes a = read_bytes(original), b = read_bytes(copy);
    EXPECT_FALSE(a.empty());
    EXPECT_TRUE(a == b) << original << " and " << copy << " differ (" << a.size() << " vs " << b.size() << " bytes)";
  }
  // The tag comes from calibration.json beside the .pt pair.
  io::RotationProvenance provenance;
  io::read_rotation_gguf(gguf, &provenance);
  EXPECT_EQ(provenance.calibration_tag, calibration.tag);
}

TEST(ZooGguf, PtToGgufToPtIsByteIdenticalPerLayer) { expect_round_trip(stories()); }

TEST(ZooGguf, PtToGgufToPtIsByteIdenticalPerKvHead) { expect_round_trip(stories_per_head()); }

TEST(ZooGguf, PtToGgufToPtIsByteIdenticalHeadDim16) { expect_round_trip(tiny()); }

// ----- 2. the convention ---------------------------------------------------------------------------------------

void expect_convention(const Calibrated& calibration, bool per_head) {
  TempDir dir;
  const std::string gguf = dir / "rotations.gguf";
  const ToolRun run = run_zoo({"convert", calibration.dir, gguf});
  ASSERT_EQ(run.status, 0) << run.out << run.err;
  const io::RotationSet key = io::read_rotation_set(io::find_rotation_file(calibration.dir, "k_rotation_"));
  const io::RotationSet value = io::read_rotation_set(io::find_rotation_file(calibration.dir, "v_rotation_"));
  ASSERT_FALSE(key.layers.empty());
  const int d = key.layers.front().head_dim, heads = key.layers.front().num_heads;
  EXPECT_EQ(heads > 1, per_head);

  const io::GgufReader reader(gguf);
  EXPECT_EQ(reader.version(), 3u);
  EXPECT_EQ(reader.get_string("general.architecture"), "oscar-rotations");
  EXPECT_EQ(reader.value("oscar.format_version"), io::GgufValue::uint32(1));
  EXPECT_EQ(reader.value("oscar.rotation_format"), io::GgufValue::uint32(per_head ? 2 : 1));
  EXPECT_EQ(reader.value("oscar.key_objective"), io::GgufValue::string("qqt_r_h_pbr"));
  EXPECT_EQ(reader.value("oscar.value_objective"), io::GgufValue::string("sst_r_h_pbr"));
  EXPECT_EQ(reader.value("oscar.composition"), io::GgufValue::string("r_h_pbr"));
  EXPECT_EQ(reader.value("oscar.granularity"), io::GgufValue::string(per_head ? "per_kv_head" : "layer"));
  EXPECT_EQ(reader.value("oscar.head_dim"), io::GgufValue::uint32(std::uint32_t(d)));
  EXPECT_EQ(reader.value("oscar.rotation_heads"), io::GgufValue::uint32(std::uint32_t(heads)));
  std::vector<std::int32_t> layer_ids;
  std::vector<float> key_eigenvalues, value_eigenvalues;
  for (std::size_t l = 0; l < key.layers.size(); ++l) {
    layer_ids.push_back(key.layers[l].layer_id);
    key_eigenvalues.insert(key_eigenvalues.end(), key.layers[l].eigenvalues.begin(), key.layers[l].eigenvalues.end());
    value_eigenvalues.insert(value_eigenvalues.end(), value.layers[l].eigenvalues.begin(), value.layers[l].eigenvalues.end());
  }
  EXPECT_EQ(reader.value("oscar.layer_ids"), io::GgufValue::int32_array(layer_ids));
  EXPECT_EQ(reader.value("oscar.key_eigenvalues"), io::GgufValue::float32_array(key_eigenvalues));
  EXPECT_EQ(reader.value("oscar.value_eigenvalues"), io::GgufValue::float32_array(value_eigenvalues));
  EXPECT_EQ(reader.value("oscar.calibration_tag"), io::GgufValue::string(calibration.tag));
  EXPECT_EQ(reader.value("oscar.k_clip"), io::GgufValue::float32(0.96f));
  EXPECT_EQ(reader.value("oscar.v_clip"), io::GgufValue::float32(0.92f));
  EXPECT_EQ(reader.value("oscar.tool_version"), io::GgufValue::string(kVersion));

  std::vector<std::uint64_t> ne = {std::uint64_t(d), std::uint64_t(d)};
  if (per_head) ne.push_back(std::uint64_t(heads));
  EXPECT_EQ(reader.tensors().size(), 2 * key.layers.size());
  std::mt19937 random(7);
  std::normal_distribution<double> normal;
  for (const auto& [kind, set] : {std::pair<char, const io::RotationSet*>{'k', &key}, {'v', &value}}) {
    for (const io::LayerRotation& layer : set->layers) {
      const std::string name = "blk." + std::to_string(layer.layer_id) + ".attn_" + kind + "_rot.weight";
      EXPECT_EQ(io::rotation_gguf::tensor_name(layer.layer_id, kind), name);
      const io::GgufTensorInfo* info = reader.find_tensor(name);
      ASSERT_NE(info, nullptr) << name;
      EXPECT_EQ(info->type, io::gguf_format::kGgmlF32) << name;
      EXPECT_EQ(info->ne, ne) << name;
      const std::vector<float> stored = floats_of(reader.tensor_data(*info));
      ASSERT_EQ(stored.size(), std::size_t(heads) * d * d) << name;
      for (int h = 0; h < heads; ++h) {
        const std::size_t base = std::size_t(h) * d * d;
        // Rᵀ: element [i][j] of the stored matrix (ne[0] = j innermost) is R[j][i] of the .pt, bit for bit.
        for (int i = 0; i < d; ++i) {
          for (int j = 0; j < d; ++j) {
            ASSERT_EQ(stored[base + std::size_t(i) * d + j], layer.rotation[base + std::size_t(j) * d + i])
                << name << " head " << h << " [" << i << "][" << j << "]";
          }
        }
        // So ggml_mul_mat(rot, x) — row i of rot dotted with x — is (x·R)[i].
        std::vector<double> x(std::size_t(d), 0);
        for (double& v : x) v = normal(random);
        for (int i = 0; i < d; ++i) {
          double ggml = 0, reference = 0;
          for (int k = 0; k < d; ++k) {
            ggml += double(stored[base + std::size_t(i) * d + k]) * x[std::size_t(k)];
            reference += x[std::size_t(k)] * double(layer.rotation[base + std::size_t(k) * d + i]);
          }
          EXPECT_NEAR(ggml, reference, 1e-12) << name;
        }
      }
    }
  }
  // And the library reads back exactly the .pt pair.
  expect_same_pair(io::read_rotation_gguf(gguf), pt_pair(calibration), gguf);
}

TEST(ZooGguf, ConventionPerLayer) { expect_convention(stories(), false); }

TEST(ZooGguf, ConventionPerKvHead) { expect_convention(stories_per_head(), true); }

// ----- 3. an independent reader --------------------------------------------------------------------------------

TEST(ZooGguf, IndependentReaderAgreesOnRotationAndBakedFiles) {
  TempDir dir;
  const std::string prefix = gguf_npm_prefix();
  ASSERT_FALSE(prefix.empty());

  for (const Calibrated* calibration : {&stories(), &stories_per_head()}) {
    const std::string path = dir / ("rotations-" + std::to_string(calibration == &stories()) + ".gguf");
    ASSERT_EQ(run_zoo({"convert", calibration->dir, path}).status, 0);
    const io::GgufReader reader(path);
    const nlohmann::json node = read_with_node(prefix, path, dir);
    ASSERT_FALSE(node.is_null());
    EXPECT_EQ(node.at("tensors").size(), reader.tensors().size());
    expect_node_agrees(node, reader);
  }

  const std::string baked = dir / "TinyStories-656K-Q8_0-rot.gguf";
  const ToolRun bake = run_zoo({"bake", "--base", tinystories_gguf(), "--rotations", tiny().dir, "--out", baked});
  ASSERT_EQ(bake.status, 0) << bake.out << bake.err;
  const io::GgufReader reader(baked);
  const nlohmann::json node = read_with_node(prefix, baked, dir);
  ASSERT_FALSE(node.is_null());
  bool saw_rotation = false;
  for (const auto& tensor : node.at("tensors")) saw_rotation |= tensor.at("name") == "blk.1.attn_v_rot.weight";
  EXPECT_TRUE(saw_rotation);
  expect_node_agrees(node, reader);
}

// ----- 4. baking -----------------------------------------------------------------------------------------------

const std::vector<std::string> kOscarKeys = {
    "oscar.format_version", "oscar.rotation_format", "oscar.key_objective", "oscar.value_objective",
    "oscar.composition",    "oscar.granularity",     "oscar.head_dim",      "oscar.rotation_heads",
    "oscar.layer_ids",      "oscar.key_eigenvalues", "oscar.value_eigenvalues", "oscar.k_clip",
    "oscar.v_clip",         "oscar.calibration_tag", "oscar.tool_version"};

TEST(ZooBake, BaseIsCopiedIntactAndRotationsFollow) {
  TempDir dir;
  const std::string baked = dir / "baked.gguf";
  const io::RotationPair pair = pt_pair(tiny());
  io::bake_rotation_gguf(tinystories_gguf(), pair, {tiny().tag, 0.96, 0.92}, baked);
  EXPECT_FALSE(fs::exists(baked + ".tmp"));

  const io::GgufReader base(tinystories_gguf()), out(baked);
  EXPECT_FALSE(io::has_rotation_gguf_metadata(base));
  EXPECT_TRUE(io::has_rotation_gguf_metadata(out));
  EXPECT_EQ(out.alignment(), base.alignment());
  EXPECT_EQ(out.data_offset() % out.alignment(), 0u);

  // Every base key, in order, with the same value; then exactly the oscar.* keys.
  ASSERT_EQ(out.metadata().size(), base.metadata().size() + kOscarKeys.size());
  for (std::size_t i = 0; i < base.metadata().size(); ++i) {
    EXPECT_EQ(out.metadata()[i].key, base.metadata()[i].key) << i;
    EXPECT_TRUE(out.metadata()[i].value == base.metadata()[i].value) << base.metadata()[i].key;
  }
  for (std::size_t i = 0; i < kOscarKeys.size(); ++i) {
    EXPECT_EQ(out.metadata()[base.metadata().size() + i].key, kOscarKeys[i]);
  }
  EXPECT_EQ(out.get_string("general.architecture"), base.get_string("general.architecture"));  // still the model's
  EXPECT_EQ(out.get_string("oscar.calibration_tag"), tiny().tag);

  // Every base tensor, in order: same name, type, extents and bytes; then 2 × layers F32 rot tensors.
  ASSERT_EQ(out.tensors().size(), base.tensors().size() + 2 * pair.key.layers.size());
  for (std::size_t i = 0; i < base.tensors().size(); ++i) {
    const io::GgufTensorInfo &a = base.tensors()[i], &b = out.tensors()[i];
    EXPECT_EQ(b.name, a.name) << i;
    EXPECT_EQ(b.type, a.type) << a.name;
    EXPECT_EQ(b.ne, a.ne) << a.name;
    const io::GgufBytes x = base.tensor_data(a), y = out.tensor_data(b);
    ASSERT_EQ(x.size, y.size) << a.name;
    EXPECT_EQ(std::memcmp(x.data, y.data, x.size), 0) << a.name;
  }
  std::set<std::string> expected_rot, seen_rot;
  for (const io::LayerRotation& layer : pair.key.layers) {
    expected_rot.insert(io::rotation_gguf::tensor_name(layer.layer_id, 'k'));
    expected_rot.insert(io::rotation_gguf::tensor_name(layer.layer_id, 'v'));
  }
  for (std::size_t i = base.tensors().size(); i < out.tensors().size(); ++i) {
    const io::GgufTensorInfo& info = out.tensors()[i];
    seen_rot.insert(info.name);
    EXPECT_EQ(info.type, io::gguf_format::kGgmlF32) << info.name;
    EXPECT_EQ(info.ne, (std::vector<std::uint64_t>{16, 16})) << info.name;
  }
  EXPECT_EQ(seen_rot, expected_rot);

  // The rotations read back from the baked model are the .pt pair; provenance as given.
  io::RotationProvenance provenance;
  expect_same_pair(io::read_rotation_gguf(baked, &provenance), pair, baked);
  EXPECT_EQ(provenance.calibration_tag, tiny().tag);
  EXPECT_EQ(provenance.key_clip, double(0.96f));
  EXPECT_EQ(provenance.value_clip, double(0.92f));
  expect_same_pair(io::read_rotation_pair(baked), pair, baked);
}

TEST(ZooBake, DeterministicAndTheToolAgreesWithTheLibrary) {
  TempDir dir;
  const std::string library = dir / "library.gguf", first = dir / "first.gguf", second = dir / "second.gguf";
  io::bake_rotation_gguf(tinystories_gguf(), pt_pair(tiny()), {tiny().tag, 0.96, 0.92}, library);
  for (const std::string& out : {first, second}) {
    const ToolRun run = run_zoo({"bake", "--base", tinystories_gguf(), "--rotations", tiny().dir, "--out", out});
    ASSERT_EQ(run.status, 0) << run.out << run.err;
    EXPECT_NE(run.out.find("wrote " + out), std::string::npos) << run.out;
  }
  const Bytes bytes = read_bytes(first);
  EXPECT_TRUE(bytes == read_bytes(second)) << "baking twice gave different bytes";
  EXPECT_TRUE(bytes == read_bytes(library)) << "the tool's bake differs from the library's with the same provenance";

  // Rotations given as a standalone GGUF bake the same bytes (its provenance travels with it).
  const std::string standalone = dir / "rotations.gguf";
  ASSERT_EQ(run_zoo({"convert", tiny().dir, standalone}).status, 0);
  const std::string third = dir / "third.gguf";
  const ToolRun run = run_zoo({"bake", "--base", tinystories_gguf(), "--rotations", standalone, "--out", third});
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_TRUE(read_bytes(third) == bytes);
}

TEST(ZooBake, RefusesABakedBase) {
  TempDir dir;
  const std::string baked = dir / "baked.gguf";
  io::bake_rotation_gguf(tinystories_gguf(), pt_pair(tiny()), {tiny().tag, 0.96, 0.92}, baked);
  expect_input_error_with_prefix([&] { io::bake_rotation_gguf(baked, pt_pair(tiny()), {}, dir / "twice.gguf"); },
                                 baked + ": ", "already holds");
  EXPECT_FALSE(fs::exists(dir / "twice.gguf"));
  EXPECT_FALSE(fs::exists(dir / "twice.gguf.tmp"));
}

TEST(ZooBake, RefusesRotationsOfAnotherGeometry) {
  TempDir dir;
  const std::string base = tinystories_gguf();
  // stories260K has 5 layers, head_dim 8; TinyStories-656K has 2 blocks, head size 16.
  io::RotationPair pair = pt_pair(stories());
  expect_input_error_with_prefix([&] { io::bake_rotation_gguf(base, pair, {}, dir / "out.gguf"); }, base + ": ",
                                 "layer 2 at position 2, the model needs layers 0..1");
  pair.key.layers.resize(1);
  pair.value.layers.resize(1);
  expect_input_error_with_prefix([&] { io::bake_rotation_gguf(base, pair, {}, dir / "out.gguf"); }, base + ": ",
                                 "cover 1 layers, the model has 2");
  pair = pt_pair(stories());
  pair.key.layers.resize(2);
  pair.value.layers.resize(2);
  expect_input_error_with_prefix([&] { io::bake_rotation_gguf(base, pair, {}, dir / "out.gguf"); }, base + ": ",
                                 "head size 16, the rotations are 8x8");
  // Key and value sets that disagree are refused before anything is written.
  pair = pt_pair(tiny());
  pair.value.layers.pop_back();
  expect_input_error_with_prefix([&] { io::bake_rotation_gguf(base, pair, {}, dir / "out.gguf"); }, "rotations: ",
                                 "differ in format or layer count");
  EXPECT_FALSE(fs::exists(dir / "out.gguf"));
  EXPECT_FALSE(fs::exists(dir / "out.gguf.tmp"));
}

TEST(ZooBake, TheToolExitsOneOnBadInputAndWritesNothing) {
  TempDir dir;
  const std::string baked = dir / "baked.gguf";
  ASSERT_EQ(run_zoo({"bake", "--base", tinystories_gguf(), "--rotations", tiny().dir, "--out", baked}).status, 0);
  const std::string truncated = dir / "truncated.gguf";
  {
    const std::string whole = write_standalone(tiny(), dir, "whole.gguf");
    Bytes bytes = read_bytes(whole);
    bytes.resize(bytes.size() / 2);
    write_bytes(truncated, bytes);
  }
  struct Case {
    std::string base, rotations, problem;
  };
  const std::vector<Case> cases = {
      {tinystories_gguf(), stories().dir, tinystories_gguf() + ": the rotations have layer 2"},
      {baked, tiny().dir, baked + ": already holds"},
      {tinystories_gguf(), truncated, truncated + ": "},
      {tinystories_gguf(), dir / "absent", dir / "absent" + ": "},
  };
  for (const Case& c : cases) {
    const std::string out = dir / "out.gguf";
    const ToolRun run = run_zoo({"bake", "--base", c.base, "--rotations", c.rotations, "--out", out});
    EXPECT_EQ(run.status, 1) << c.problem << "\n" << run.out << run.err;
    EXPECT_NE(run.err.find("oscar-zoo: error: " + c.problem), std::string::npos) << run.err;
    EXPECT_EQ(std::count(run.err.begin(), run.err.end(), '\n'), 1) << run.err;
    EXPECT_FALSE(fs::exists(out)) << c.problem;
    EXPECT_FALSE(fs::exists(out + ".tmp")) << c.problem;
  }
}

// ----- 5. truncated and corrupt rotation files ------------------------------------------------------------------

/// Reads the GGUF header independently of lib/io (the layout of lib/io/gguf.h): little-endian fields in order.
struct HeaderCursor {
  const Bytes& bytes;
  std::size_t pos = 0;

  std::uint64_t read(std::size_t size) {
    if (pos + size > bytes.size()) throw std::out_of_range("header cursor past the end");
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < size; ++i) value |= std::uint64_t(bytes[pos + i]) << (8 * i);
    pos += size;
    return value;
  }
  void skip_string() { pos += std::size_t(read(8)); }
  void skip_value(std::uint32_t type) {
    switch (type) {
      case 0: case 1: case 7: pos += 1; break;     // uint8, int8, bool
      case 2: case 3: pos += 2; break;             // uint16, int16
      case 4: case 5: case 6: pos += 4; break;     // uint32, int32, float32
      case 10: case 11: case 12: pos += 8; break;  // uint64, int64, float64
      case 8: skip_string(); break;
      case 9: {                                    // array: element type, count, elements
        const auto element = std::uint32_t(read(4));
        const std::uint64_t count = read(8);
        for (std::uint64_t i = 0; i < count; ++i) skip_value(element);
        break;
      }
      default: throw std::runtime_error("unknown value type " + std::to_string(type));
    }
  }
};

/// The file position of the offset field of the first tensor info.
std::size_t first_tensor_offset_field(const Bytes& bytes) {
  HeaderCursor cursor{bytes, 8};  // after magic and version
  const std::uint64_t tensors = cursor.read(8), keys = cursor.read(8);
  EXPECT_GT(tensors, 0u);
  for (std::uint64_t k = 0; k < keys; ++k) {
    cursor.skip_string();
    cursor.skip_value(std::uint32_t(cursor.read(4)));
  }
  cursor.skip_string();                          // the name
  cursor.pos += 8 * std::size_t(cursor.read(4));  // n_dims extents
  cursor.pos += 4;                               // the ggml type
  return cursor.pos;
}

void put_u64(Bytes& bytes, std::size_t pos, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) bytes.at(pos + std::size_t(i)) = std::uint8_t(value >> (8 * i));
}

/// io::read_rotation_gguf and `oscar-zoo inspect` both reject `path` with a one-line error starting with the path.
void expect_rejected_everywhere(const std::string& path, const std::string& fragment, const std::string& what) {
  SCOPED_TRACE(what);
  expect_input_error_with_prefix([&] { io::read_rotation_gguf(path); }, path + ": ", fragment);
  expect_input_error_with_prefix([&] { io::read_rotation_pair(path); }, path + ": ", fragment);
  const ToolRun run = run_zoo({"inspect", path});
  EXPECT_EQ(run.status, 1) << run.out << run.err;
  expect_one_line_error_naming(run, path);
  EXPECT_NE(run.err.find(fragment), std::string::npos) << run.err;
  EXPECT_TRUE(run.out.empty()) << run.out;
}

TEST(ZooCorrupt, TruncatedRotationFilesAreRejected) {
  TempDir dir;
  const std::string whole = write_standalone(stories(), dir, "whole.gguf");
  const Bytes bytes = read_bytes(whole);
  const io::GgufReader reader(whole);
  const io::GgufTensorInfo& last = reader.tensors().back();
  const std::size_t data_end = std::size_t(reader.data_offset() + last.offset + last.byte_size);
  ASSERT_LE(data_end, bytes.size());
  const std::size_t offset_field = first_tensor_offset_field(bytes);
  const std::vector<std::size_t> cuts = {0, 3, 20, 100, offset_field, std::size_t(reader.data_offset()) - 1,
                                         std::size_t(reader.data_offset()) + 10, data_end - 1};
  for (std::size_t cut : cuts) {
    ASSERT_LT(cut, bytes.size());
    const std::string path = dir / ("cut-" + std::to_string(cut) + ".gguf");
    write_bytes(path, Bytes(bytes.begin(), bytes.begin() + std::ptrdiff_t(cut)));
    expect_rejected_everywhere(path, "truncated", "cut at " + std::to_string(cut) + " of " + std::to_string(bytes.size()));
  }
}

TEST(ZooCorrupt, ImpossibleTensorOffsetIsRejected) {
  TempDir dir;
  const std::string whole = write_standalone(stories(), dir, "whole.gguf");
  const Bytes bytes = read_bytes(whole);
  const io::GgufReader reader(whole);
  const std::size_t field = first_tensor_offset_field(bytes);
  // The parse found the field: it holds the first tensor's offset (0), the next tensor's name follows it.
  std::uint64_t stored;
  std::memcpy(&stored, bytes.data() + field, 8);
  EXPECT_EQ(stored, reader.tensors().front().offset);
  std::uint64_t next_name_length;
  std::memcpy(&next_name_length, bytes.data() + field + 8, 8);
  EXPECT_EQ(next_name_length, reader.tensors()[1].name.size());

  const std::uint64_t alignment = reader.alignment();
  const std::uint64_t past_end = (reader.file_size() + alignment - 1) / alignment * alignment;  // aligned, beyond the data
  for (const std::uint64_t offset : {past_end, past_end + 1024 * alignment, ~std::uint64_t(0) / alignment * alignment}) {
    Bytes patched = bytes;
    put_u64(patched, field, offset);
    const std::string path = dir / ("offset-" + std::to_string(offset) + ".gguf");
    write_bytes(path, patched);
    expect_rejected_everywhere(path, "ends past the end of the file", "offset " + std::to_string(offset));
  }
  // A misaligned offset inside the file, and one that makes the first tensor overlap the second.
  Bytes patched = bytes;
  put_u64(patched, field, 4);
  write_bytes(dir / "misaligned.gguf", patched);
  expect_rejected_everywhere(dir / "misaligned.gguf", "not a multiple of the alignment", "misaligned");
  put_u64(patched, field, reader.tensors()[1].offset);
  write_bytes(dir / "overlapping.gguf", patched);
  expect_rejected_everywhere(dir / "overlapping.gguf", "overlaps", "overlapping");
}

TEST(ZooCorrupt, ModelWithoutRotationsAndInconsistentMetadataAreRejected) {
  TempDir dir;
  // A model GGUF holds no rotations.
  expect_input_error_with_prefix([&] { io::read_rotation_gguf(tinystories_gguf()); }, tinystories_gguf() + ": ",
                                 "no oscar.* rotations");
  // A rotation file whose metadata disagrees with its tensors: one layer id more than there are tensors.
  const io::GgufReader reader(write_standalone(stories(), dir, "whole.gguf"));
  io::GgufWriter writer;
  for (const io::GgufKeyValue& kv : reader.metadata()) {
    io::GgufValue value = kv.value;
    if (kv.key == "oscar.layer_ids") value.elements.push_back(io::GgufValue::int32(7));
    writer.add_metadata(kv.key, value);
  }
  for (const io::GgufTensorInfo& t : reader.tensors()) {
    const io::GgufBytes b = reader.tensor_data(t);
    writer.add_tensor_view(t.name, t.type, t.ne, b.data, b.size);
  }
  const std::string path = dir / "extra-layer.gguf";
  writer.write(path);
  expect_rejected_everywhere(path, "oscar.key_eigenvalues hold", "extra layer id");
}

}  // namespace
}  // namespace oscar::test
