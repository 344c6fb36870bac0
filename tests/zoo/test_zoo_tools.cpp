// lib/zoo and the oscar-zoo subcommands other than convert/bake: diff (eigen-subspace overlap, blind to
// eigenvector signs), inspect (text and JSON), and zoo entry manifests (with a real verify.json from oscar-verify).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "io/rotation_gguf.h"
#include "io/rotation_pair.h"
#include "io/rotation_set.h"
#include "linalg/composition.h"
#include "linalg/symmetric_eigen.h"
#include "zoo/rotation_diff.h"
#include "zoo/rotation_inspect.h"
#include "zoo/zoo_manifest.h"
#include "zoo_test_support.h"

namespace oscar::test {
namespace {

namespace fs = std::filesystem;
using linalg::Matrix;

const Calibrated& stories() { return calibrated(Bundled::kStories260K); }
const Calibrated& stories_per_head() { return calibrated(Bundled::kStories260KPerKvHead); }
const Calibrated& tiny() { return calibrated(Bundled::kTinyStories656K); }

// ----- 6. diff ----------------------------------------------------------------------------------------------------

/// G·Gᵀ + 0.1·I with G standard normal: symmetric positive definite, distinct eigenvalues.
Matrix random_spd(long d, std::uint64_t seed) {
  std::mt19937_64 random(seed);
  std::normal_distribution<double> normal;
  Matrix g(d, d);
  for (long i = 0; i < d; ++i) {
    for (long j = 0; j < d; ++j) g(i, j) = normal(random);
  }
  return g * g.transpose() + 0.1 * Matrix::Identity(d, d);
}

/// A format-1 set with one layer per rotation (ids 0, 1, ...), float32 like a file.
io::RotationSet make_set(const std::string& objective, const std::vector<Matrix>& rotations,
                         const std::vector<linalg::Vector>& eigenvalues) {
  io::RotationSet set;
  set.objective = objective;
  for (std::size_t l = 0; l < rotations.size(); ++l) {
    const Matrix& r = rotations[l];
    io::LayerRotation layer;
    layer.layer_id = int(l);
    layer.head_dim = int(r.rows());
    for (long i = 0; i < r.rows(); ++i) {
      for (long j = 0; j < r.cols(); ++j) layer.rotation.push_back(float(r(i, j)));
    }
    for (long i = 0; i < eigenvalues[l].size(); ++i) layer.eigenvalues.push_back(float(eigenvalues[l](i)));
    set.layers.push_back(std::move(layer));
  }
  return set;
}

/// R = U·H·P of random SPD matrices; `negate` lists columns of U whose sign is flipped first.
io::RotationSet composed_set(long d, const std::vector<std::uint64_t>& seeds, const std::vector<long>& negate = {}) {
  std::vector<Matrix> rotations;
  std::vector<linalg::Vector> eigenvalues;
  for (std::uint64_t seed : seeds) {
    linalg::SymmetricEigen eigen = linalg::symmetric_eigen(random_spd(d, seed));
    for (long column : negate) eigen.eigenvectors.col(column) *= -1.0;
    rotations.push_back(linalg::compose_rotation(eigen, linalg::Composition::kRHPbr));
    eigenvalues.push_back(eigen.eigenvalues);
  }
  return make_set("qqt_r_h_pbr", rotations, eigenvalues);
}

// float32 storage of R limits how exactly U is recovered: overlaps are 1 to about 1e-7, not 1e-9.
constexpr double kOverlapTolerance = 1e-6;

void expect_aligned(const std::vector<zoo::HeadDiff>& diffs, std::size_t layers, long d) {
  ASSERT_EQ(diffs.size(), layers);
  for (const zoo::HeadDiff& diff : diffs) {
    EXPECT_TRUE(diff.has_eigenbasis) << diff.layer_id;
    EXPECT_EQ(diff.subspace_sizes, (std::vector<int>{int(std::max(1L, d / 8)), int(std::max(1L, d / 4)), int(d / 2)}));
    ASSERT_EQ(diff.overlaps.size(), 3u);
    for (double overlap : diff.overlaps) EXPECT_NEAR(overlap, 1.0, kOverlapTolerance) << diff.layer_id;
    EXPECT_NEAR(diff.matched_cosine, 1.0, kOverlapTolerance) << diff.layer_id;
  }
}

TEST(ZooDiff, ASetAgainstItself) {
  const io::RotationSet set = composed_set(32, {1, 2, 3});
  const auto diffs = zoo::diff_rotation_sets(set, set, "self");
  expect_aligned(diffs, 3, 32);
  for (const zoo::HeadDiff& diff : diffs) {
    EXPECT_EQ(diff.max_abs_difference, 0.0);
    EXPECT_EQ(diff.eigenvalue_difference, 0.0);
    EXPECT_EQ(diff.head, 0);
  }
  EXPECT_EQ(diffs[2].layer_id, 2);
}

TEST(ZooDiff, EigenvectorSignsChangeRButNotTheOverlaps) {
  const long d = 32;
  const io::RotationSet a = composed_set(d, {11, 12}), b = composed_set(d, {11, 12}, {0, 3, 17, 30, 31});
  const auto diffs = zoo::diff_rotation_sets(a, b, "signs");
  expect_aligned(diffs, 2, d);
  for (const zoo::HeadDiff& diff : diffs) {
    EXPECT_GT(diff.max_abs_difference, 0.1) << "the sign flips must change R itself";
    EXPECT_EQ(diff.eigenvalue_difference, 0.0);
  }
}

TEST(ZooDiff, UnrelatedEigenbasesOverlapLittle) {
  const long d = 32;
  const io::RotationSet a = composed_set(d, {21, 22}), b = composed_set(d, {31, 32});
  const auto diffs = zoo::diff_rotation_sets(a, b, "unrelated");
  ASSERT_EQ(diffs.size(), 2u);
  for (const zoo::HeadDiff& diff : diffs) {
    EXPECT_TRUE(diff.has_eigenbasis);
    ASSERT_EQ(diff.overlaps.size(), 3u);
    EXPECT_LT(diff.overlaps[0], 0.5) << "top-" << diff.subspace_sizes[0] << " overlap of unrelated bases";  // ~k/d
    EXPECT_LT(diff.overlaps[1], 0.6);
    EXPECT_LT(diff.matched_cosine, 0.9);
    EXPECT_GT(diff.max_abs_difference, 0.1);
    EXPECT_GT(diff.eigenvalue_difference, 0.0);
  }
}

TEST(ZooDiff, DataFreeHadamardHasNoEigenbasis) {
  const long d = 16;
  const Matrix h = linalg::hadamard_rotation(d);
  const linalg::Vector ones = linalg::Vector::Ones(d);
  const io::RotationSet hadamard = make_set("hadamard", {h, h}, {ones, ones});
  const io::RotationSet composed = composed_set(d, {5, 6});
  for (const auto& diffs : {zoo::diff_rotation_sets(hadamard, hadamard, "h"), zoo::diff_rotation_sets(composed, hadamard, "c-h"),
                            zoo::diff_rotation_sets(hadamard, composed, "h-c")}) {
    ASSERT_EQ(diffs.size(), 2u);
    for (const zoo::HeadDiff& diff : diffs) {
      EXPECT_FALSE(diff.has_eigenbasis);
      EXPECT_TRUE(diff.overlaps.empty());
    }
  }
  EXPECT_EQ(zoo::diff_rotation_sets(hadamard, hadamard, "h")[0].max_abs_difference, 0.0);
  EXPECT_GT(zoo::diff_rotation_sets(composed, hadamard, "c-h")[0].max_abs_difference, 0.01);
}

// P is rebuilt from the float32 eigenvalues of the file, but calibration built it from the float64 ones. When two
// eigenvalues are equal in float32 (here an exactly repeated eigenvalue, which the solver returns a few ulps apart)
// the order may differ and U = R·Pᵀ·H would be wrong in every column, so diff must not claim an eigenbasis.
TEST(ZooDiff, NoEigenbasisWhenEigenvaluesTieInFloat32) {
  const long d = 16;
  std::mt19937_64 random(3);
  std::normal_distribution<double> normal;
  Matrix g(d, d);
  for (long i = 0; i < d; ++i) {
    for (long j = 0; j < d; ++j) g(i, j) = normal(random);
  }
  const Matrix q = Eigen::HouseholderQR<Matrix>(g).householderQ();
  linalg::Vector spectrum(d);
  for (long i = 0; i < d; ++i) spectrum(i) = 1.0 + double(i);
  spectrum(14) = spectrum(13);  // a repeated eigenvalue
  linalg::SymmetricEigen eigen = linalg::symmetric_eigen(q * spectrum.asDiagonal() * q.transpose());
  const Matrix r = linalg::compose_rotation(eigen, linalg::Composition::kRHPbr);
  for (long column : {0, 1, 2, 3, 5, 7, 11, 15}) eigen.eigenvectors.col(column) *= -1.0;
  const Matrix flipped = linalg::compose_rotation(eigen, linalg::Composition::kRHPbr);
  const auto diffs = zoo::diff_rotation_sets(make_set("qqt_r_h_pbr", {r}, {eigen.eigenvalues}),
                                             make_set("qqt_r_h_pbr", {flipped}, {eigen.eigenvalues}), "tie");
  ASSERT_EQ(diffs.size(), 1u);
  EXPECT_FALSE(diffs[0].has_eigenbasis);
  EXPECT_TRUE(diffs[0].overlaps.empty());
  EXPECT_GT(diffs[0].max_abs_difference, 0.1);
}

TEST(ZooDiff, MismatchedSetsAreRefused) {
  const io::RotationSet two = composed_set(16, {1, 2}), three = composed_set(16, {1, 2, 3}), wide = composed_set(32, {1, 2});
  expect_input_error_with_prefix([&] { zoo::diff_rotation_sets(two, three, "A vs B"); }, "A vs B: ", "2 and 3 layers");
  expect_input_error_with_prefix([&] { zoo::diff_rotation_sets(two, wide, "A vs B"); }, "A vs B: ", "head_dim");
}

TEST(ZooDiff, CalibratedSetsPerHead) {
  const io::RotationPair pair = pt_pair(stories_per_head());
  const auto diffs = zoo::diff_rotation_sets(pair.key, pair.key, "per head");
  ASSERT_EQ(diffs.size(), pair.key.layers.size() * 4);  // 4 KV heads
  expect_aligned(diffs, diffs.size(), 8);
  EXPECT_EQ(diffs[3].head, 3);
  EXPECT_EQ(diffs[4].layer_id, pair.key.layers[1].layer_id);
  // The per-layer and per-head sets of one model differ in head count.
  expect_input_error_with_prefix([&] { zoo::diff_rotation_sets(pt_pair(stories()).key, pair.key, "L vs H"); }, "L vs H: ",
                                 "head count");
}

TEST(ZooDiff, TheToolComparesDirectoriesAndFiles) {
  TempDir dir;
  const ToolRun text = run_zoo({"diff", stories().dir, stories().dir});
  ASSERT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("keys"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("values"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("k=1:1.000"), std::string::npos) << text.out;  // d = 8: top-1 overlap 1

  // A directory against its GGUF, as JSON: two documents (keys, values), every overlap 1, R identical.
  const std::string gguf = dir / "rotations.gguf";
  ASSERT_EQ(run_zoo({"convert", stories().dir, gguf}).status, 0);
  const ToolRun json = run_zoo({"diff", stories().dir, gguf, "--json"});
  ASSERT_EQ(json.status, 0) << json.err;
  std::istringstream stream(json.out);
  nlohmann::json keys, values;
  stream >> keys >> values;
  EXPECT_EQ(keys.at("set"), "keys");
  EXPECT_EQ(values.at("set"), "values");
  for (const nlohmann::json* document : {&keys, &values}) {
    ASSERT_EQ(document->at("layers").size(), 5u);
    for (const auto& layer : document->at("layers")) {
      EXPECT_TRUE(layer.at("has_eigenbasis").get<bool>());
      EXPECT_EQ(layer.at("max_abs_difference").get<double>(), 0.0);
      for (const auto& overlap : layer.at("overlaps")) EXPECT_NEAR(overlap.get<double>(), 1.0, kOverlapTolerance);
    }
  }

  // Two single .pt files; and sets of different models are refused with exit 1.
  const std::string k = io::find_rotation_file(stories().dir, "k_rotation_");
  const ToolRun files = run_zoo({"diff", k, k});
  EXPECT_EQ(files.status, 0) << files.err;
  EXPECT_NE(files.out.find("rotations"), std::string::npos) << files.out;
  const ToolRun different = run_zoo({"diff", stories().dir, tiny().dir});
  EXPECT_EQ(different.status, 1) << different.out;
  EXPECT_NE(different.err.find("oscar-zoo: error: " + stories().dir + " vs " + tiny().dir + ": "), std::string::npos)
      << different.err;
}

// ----- 7. inspect -------------------------------------------------------------------------------------------------

TEST(ZooInspect, TextModeShowsLayersAndOrthogonality) {
  const ToolRun run = run_zoo({"inspect", stories().dir});
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_NE(run.out.find(stories().dir + " (directory)"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("qqt_r_h_pbr: 5 layers, head_dim 8"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("sst_r_h_pbr: 5 layers, head_dim 8"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("max |R·Rt - I|"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find(stories().tag), std::string::npos) << run.out;  // provenance from calibration.json

  const ToolRun per_head = run_zoo({"inspect", stories_per_head().dir});
  ASSERT_EQ(per_head.status, 0) << per_head.err;
  EXPECT_NE(per_head.out.find("4 matrix(es)/layer (per_kv_head)"), std::string::npos) << per_head.out;
}

nlohmann::json inspect_json(const std::string& path) {
  const ToolRun run = run_zoo({"inspect", path, "--json"});
  EXPECT_EQ(run.status, 0) << run.err;
  const nlohmann::json description = nlohmann::json::parse(run.out, nullptr, false);
  EXPECT_FALSE(description.is_discarded()) << run.out;
  EXPECT_EQ(description, zoo::inspect_rotations(path));  // the tool prints what the library describes
  return description;
}

void expect_sets(const nlohmann::json& description, std::size_t layers, int head_dim, int heads) {
  ASSERT_EQ(description.at("sets").size(), 2u);
  EXPECT_EQ(description["sets"][0].at("objective"), "qqt_r_h_pbr");
  EXPECT_EQ(description["sets"][1].at("objective"), "sst_r_h_pbr");
  for (const auto& set : description.at("sets")) {
    EXPECT_EQ(set.at("layers").get<std::size_t>(), layers);
    EXPECT_EQ(set.at("head_dim").get<int>(), head_dim);
    EXPECT_EQ(set.at("heads_per_layer").get<int>(), heads);
    EXPECT_LT(set.at("max_orthogonality_error").get<double>(), 1e-5);
    EXPECT_EQ(set.at("per_layer").size(), layers);
  }
}

TEST(ZooInspect, JsonKindsAndProvenance) {
  TempDir dir;
  const nlohmann::json directory = inspect_json(stories().dir);
  EXPECT_EQ(directory.at("kind"), "directory");
  EXPECT_EQ(directory.at("provenance").at("tag"), stories().tag);
  expect_sets(directory, 5, 8, 1);
  EXPECT_EQ(directory["sets"][0].at("granularity"), "layer");

  const nlohmann::json per_head = inspect_json(stories_per_head().dir);
  expect_sets(per_head, 5, 8, 4);
  EXPECT_EQ(per_head["sets"][0].at("granularity"), "per_kv_head");
  EXPECT_EQ(per_head["sets"][0].at("format_version"), 2);

  const std::string gguf = dir / "rotations.gguf";
  ASSERT_EQ(run_zoo({"convert", stories().dir, gguf, "--k-clip", "0.9"}).status, 0);
  const nlohmann::json standalone = inspect_json(gguf);
  EXPECT_EQ(standalone.at("kind"), "gguf");
  EXPECT_EQ(standalone.at("provenance").at("tag"), stories().tag);
  EXPECT_EQ(standalone.at("provenance").at("k_clip").get<double>(), double(0.9f));
  EXPECT_EQ(standalone.at("provenance").at("v_clip").get<double>(), double(0.92f));
  EXPECT_EQ(standalone.at("provenance").at("base_tensors"), 0);
  expect_sets(standalone, 5, 8, 1);

  const std::string baked = dir / "baked.gguf";
  ASSERT_EQ(run_zoo({"bake", "--base", tinystories_gguf(), "--rotations", tiny().dir, "--out", baked, "--tag", "custom"}).status, 0);
  const nlohmann::json model = inspect_json(baked);
  EXPECT_EQ(model.at("kind"), "gguf-baked");
  EXPECT_EQ(model.at("provenance").at("tag"), "custom");
  EXPECT_EQ(model.at("provenance").at("base_tensors").get<std::size_t>(), io::GgufReader(tinystories_gguf()).tensors().size());
  expect_sets(model, 2, 16, 1);

  const nlohmann::json pt = inspect_json(io::find_rotation_file(stories().dir, "k_rotation_"));
  EXPECT_EQ(pt.at("kind"), "pt");
  ASSERT_EQ(pt.at("sets").size(), 1u);
  EXPECT_EQ(pt.at("provenance").at("tag"), stories().tag);
}

TEST(ZooInspect, MissingAndForeignPathsExitOne) {
  TempDir dir;
  const ToolRun missing = run_zoo({"inspect", dir / "absent"});
  EXPECT_EQ(missing.status, 1);
  expect_one_line_error_naming(missing, dir / "absent");
  const ToolRun model = run_zoo({"inspect", tinystories_gguf()});
  EXPECT_EQ(model.status, 1);
  expect_one_line_error_naming(model, tinystories_gguf());
  EXPECT_NE(model.err.find("no oscar.* rotations"), std::string::npos) << model.err;
}

// ----- 8. manifests -----------------------------------------------------------------------------------------------

/// A zoo entry <tmp>/stories260K/<tag>: the calibrated pair, calibration.json and a real verify.json.
struct Entry {
  TempDir root;
  std::string dir;
};

std::unique_ptr<Entry> make_entry() {
  auto entry = std::make_unique<Entry>();
  entry->dir = entry->root / ("stories260K/" + stories().tag);
  copy_directory_files(stories().dir, entry->dir);
  const std::string verify = (fs::path(OSCAR_ZOO_BIN).parent_path() / "oscar-verify").string();
  const ToolRun run = run_tool(verify, {"--model", "../shared/data/models/stories260K/stories260K.bin", "--rotations", entry->dir,
                                        "--eval", "../shared/data/text/tinystories_sample.txt", "--methods", "fp,naive,oscar",
                                        "--sink", "8", "--recent", "16", "-q", "--report", entry->dir + "/verify.json"});
  EXPECT_EQ(run.status, 0) << run.out << run.err;
  return entry;
}

/// sha256sum's digest of a file (independent of lib/io).
std::string sha256sum(const std::string& path) {
  const CommandRun run = run_capturing("sha256sum " + shell_quote(path));
  EXPECT_EQ(run.status, 0);
  return run.output.substr(0, 64);
}

TEST(ZooManifest, ListsEveryFileWithItsDigest) {
  const auto entry = make_entry();
  const nlohmann::json manifest = zoo::build_manifest(entry->dir);
  EXPECT_EQ(manifest.at("manifest_version"), 1);
  EXPECT_EQ(manifest.at("entry"), "stories260K/" + stories().tag);
  const std::vector<std::string> names = {"calibration.json", "k_rotation_qqt_r_h_pbr.pt", "v_rotation_sst_r_h_pbr.pt",
                                          "verify.json"};
  const nlohmann::json& files = manifest.at("files");
  ASSERT_EQ(files.size(), names.size()) << files.dump(2);
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string path = entry->dir + "/" + names[i];
    EXPECT_EQ(files[i].at("name"), names[i]);
    EXPECT_EQ(files[i].at("bytes").get<std::uint64_t>(), fs::file_size(path)) << names[i];
    EXPECT_EQ(files[i].at("sha256"), sha256sum(path)) << names[i];
  }
  // The model from verify.json, the calibration text as data (not a model file), the tag.
  const nlohmann::json verify = nlohmann::json::parse(read_file_text(entry->dir + "/verify.json"));
  EXPECT_EQ(manifest.at("model").at("files"), verify.at("model").at("files"));
  EXPECT_EQ(manifest.at("model").at("identity_sha256").get<std::string>().size(), 64u);
  EXPECT_FALSE(manifest.at("model").at("description").contains("files"));
  ASSERT_EQ(manifest.at("data").size(), 1u) << manifest.at("data");
  EXPECT_EQ(manifest["data"][0].at("path"), "../shared/data/text/tinystories_val.txt");
  EXPECT_EQ(manifest["data"][0].at("sha256"), sha256sum(source_dir() + "/../shared/data/text/tinystories_val.txt"));
  EXPECT_EQ(manifest.at("calibration").at("tag"), stories().tag);
  EXPECT_EQ(manifest.at("verify").at("summary"), verify.at("summary"));
  EXPECT_EQ(manifest.at("verify").at("options"), verify.at("options"));

  // Deterministic; an unchanged entry compares equal.
  EXPECT_EQ(zoo::build_manifest(entry->dir), manifest);
  EXPECT_TRUE(zoo::compare_manifests(manifest, zoo::build_manifest(entry->dir)).empty());

  // A changed rotation file (still a valid .pt), a new file and a missing one are reported.
  const std::string v = entry->dir + "/v_rotation_sst_r_h_pbr.pt";
  io::RotationSet values = io::read_rotation_set(v);
  values.layers[0].rotation[0] = -values.layers[0].rotation[0];
  io::write_rotation_set(v, values);
  std::vector<std::string> differences = zoo::compare_manifests(manifest, zoo::build_manifest(entry->dir));
  ASSERT_EQ(differences.size(), 1u);
  EXPECT_EQ(differences[0].rfind("files: v_rotation_sst_r_h_pbr.pt: sha256 " + files[2].at("sha256").get<std::string>().substr(0, 12), 0), 0u)
      << differences[0];
  write_text_file(entry->dir + "/notes.txt", "x");
  fs::remove(entry->dir + "/k_rotation_qqt_r_h_pbr.pt");
  differences = zoo::compare_manifests(manifest, zoo::build_manifest(entry->dir));
  EXPECT_EQ(differences, (std::vector<std::string>{"files: k_rotation_qqt_r_h_pbr.pt is missing", differences.at(1),
                                                   "files: notes.txt is new"}));
}

TEST(ZooManifest, MissingRecordsAreNamed) {
  TempDir dir;
  const std::string entry = dir / "model/tag";
  copy_directory_files(stories().dir, entry);
  expect_input_error_with_prefix([&] { zoo::build_manifest(entry); }, entry + "/verify.json: ", "missing");
  fs::remove(entry + "/calibration.json");
  expect_input_error_with_prefix([&] { zoo::build_manifest(entry); }, entry + "/calibration.json: ", "missing");
}

TEST(ZooManifest, TheToolWritesAndChecks) {
  const auto entry = make_entry();
  const ToolRun write = run_zoo({"manifest", entry->dir});
  ASSERT_EQ(write.status, 0) << write.err;
  const std::string written = entry->dir + "/manifest.json";
  ASSERT_TRUE(fs::exists(written));
  EXPECT_EQ(nlohmann::json::parse(read_file_text(written)), zoo::build_manifest(entry->dir));

  // Unchanged: exit 0 (manifest.json itself is not among the files).
  const std::string committed = entry->root / "manifest.json";
  fs::copy_file(written, committed);
  const ToolRun same = run_zoo({"manifest", entry->dir, "--expect", committed});
  EXPECT_EQ(same.status, 0) << same.out << same.err;
  EXPECT_NE(same.out.find("identical"), std::string::npos) << same.out;

  // A changed file: exit 1, the file named.
  const std::string v = entry->dir + "/v_rotation_sst_r_h_pbr.pt";
  io::RotationSet values = io::read_rotation_set(v);
  values.layers[1].eigenvalues[0] *= 2;
  io::write_rotation_set(v, values);
  const ToolRun changed = run_zoo({"manifest", entry->dir, "--expect", committed});
  EXPECT_EQ(changed.status, 1) << changed.out << changed.err;
  EXPECT_NE(changed.out.find(entry->dir + ": files: v_rotation_sst_r_h_pbr.pt: sha256 "), std::string::npos) << changed.out;
}

}  // namespace
}  // namespace oscar::test
