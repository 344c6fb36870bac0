// oscar-zoo: RotationZoo files and entries.
//
//   oscar-zoo inspect PATH [--json]                 .pt, a directory with the .pt pair, or a rotation .gguf
//   oscar-zoo convert A B [--tag T --k-clip C --v-clip C]   directory (.pt pair) <-> .gguf, lossless
//   oscar-zoo bake --base MODEL.gguf --rotations DIR|FILE.gguf --out MODEL-rot-kv.gguf
//   oscar-zoo diff A B [--json]                     subspace alignment per layer, blind to eigenvector signs
//   oscar-zoo manifest DIR [--expect MANIFEST]      write DIR/manifest.json; --expect: compare, exit 1 on change
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "command_line.h"
#include "core/error.h"
#include "core/version.h"
#include "io/rotation_gguf.h"
#include "io/rotation_pair.h"
#include "zoo/rotation_diff.h"
#include "zoo/rotation_inspect.h"
#include "zoo/zoo_manifest.h"

using namespace oscar;
namespace fs = std::filesystem;

namespace {

constexpr int kDifferent = 1;

/// Provenance for a GGUF: the source's own (GGUF) or its calibration.json tag, then command-line overrides.
io::RotationProvenance provenance_of(const std::string& source, const std::string& tag, double k_clip, double v_clip) {
  io::RotationProvenance provenance;
  if (fs::is_directory(source)) {
    const fs::path record_path = fs::path(source) / "calibration.json";
    std::ifstream in(record_path);
    if (in) {
      const nlohmann::json record = nlohmann::json::parse(in, nullptr, false);
      if (!record.is_object()) throw InputError(record_path.string() + ": not a JSON object");
      provenance.calibration_tag = record.value("tag", "");
    }
  } else {
    io::read_rotation_gguf(source, &provenance);
  }
  if (!tag.empty()) provenance.calibration_tag = tag;
  if (k_clip >= 0) provenance.key_clip = k_clip;
  if (v_clip >= 0) provenance.value_clip = v_clip;
  return provenance;
}

void convert(const std::string& from, const std::string& to, const io::RotationProvenance& provenance) {
  const bool to_gguf = fs::path(to).extension() == ".gguf";
  if (fs::path(from).extension() == ".pt") throw UsageError("convert: " + from + " is one set; pass the directory holding the k_/v_rotation_*.pt pair");
  const io::RotationPair pair = io::read_rotation_pair(from);
  if (to_gguf) {
    io::write_rotation_gguf(to, pair, provenance);
    std::printf("wrote %s (%zu layers)\n", to.c_str(), pair.key.layers.size());
  } else {
    const auto [key, value] = io::write_rotation_pair(to, pair);
    std::printf("wrote %s and %s\n", key.c_str(), value.c_str());
  }
}

void print_diff(const std::vector<zoo::HeadDiff>& diffs, const char* label, bool json) {
  if (json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& d : diffs) {
      list.push_back({{"layer_id", d.layer_id}, {"head", d.head}, {"has_eigenbasis", d.has_eigenbasis}, {"subspace_sizes", d.subspace_sizes},
                      {"overlaps", d.overlaps}, {"matched_cosine", d.matched_cosine}, {"max_abs_difference", d.max_abs_difference},
                      {"eigenvalue_difference", d.eigenvalue_difference}});
    }
    std::cout << nlohmann::json{{"set", label}, {"layers", list}}.dump(2) << "\n";
    return;
  }
  std::printf("%s\n  layer head  overlap(top k)                matched|cos|  max|dR|   max|dλ|/|λ|\n", label);
  for (const auto& d : diffs) {
    std::string overlaps;
    for (size_t i = 0; i < d.overlaps.size(); ++i) {
      char cell[32];
      std::snprintf(cell, sizeof cell, "k=%d:%.3f ", d.subspace_sizes[i], d.overlaps[i]);
      overlaps += cell;
    }
    std::printf("  %5d %4d  %-28s  %-12s  %.2e  %.2e\n", d.layer_id, d.head, d.has_eigenbasis ? overlaps.c_str() : "(no eigenbasis)",
                d.has_eigenbasis ? std::to_string(d.matched_cosine).substr(0, 6).c_str() : "-", d.max_abs_difference, d.eigenvalue_difference);
  }
}

void diff(const std::string& a, const std::string& b, bool json) {
  const std::string what = a + " vs " + b;
  if (fs::path(a).extension() == ".pt" || fs::path(b).extension() == ".pt") {
    print_diff(zoo::diff_rotation_sets(io::read_rotation_set(a), io::read_rotation_set(b), what), "rotations", json);
    return;
  }
  const io::RotationPair pa = io::read_rotation_pair(a), pb = io::read_rotation_pair(b);
  print_diff(zoo::diff_rotation_sets(pa.key, pb.key, what), "keys", json);
  print_diff(zoo::diff_rotation_sets(pa.value, pb.value, what), "values", json);
}

int manifest(const std::string& dir, const std::string& expect) {
  if (expect.empty()) {
    zoo::write_manifest(dir);
    std::printf("wrote %s\n", (fs::path(dir) / zoo::manifest_format::kFileName).string().c_str());
    return kExitOk;
  }
  std::ifstream in(expect);
  if (!in) throw InputError(expect + ": cannot open");
  const nlohmann::json expected = nlohmann::json::parse(in, nullptr, false);
  if (expected.is_discarded()) throw InputError(expect + ": not JSON");
  const std::vector<std::string> differences = zoo::compare_manifests(expected, zoo::build_manifest(dir));
  for (const std::string& line : differences) std::printf("%s: %s\n", dir.c_str(), line.c_str());
  if (differences.empty()) std::printf("%s: identical to %s\n", dir.c_str(), expect.c_str());
  return differences.empty() ? kExitOk : kDifferent;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"oscar-zoo " + std::string(kVersion) + ": inspect, convert, bake, compare RotationZoo files; zoo entry manifests"};
  app.set_version_flag("--version", std::string("oscar-zoo ") + kVersion);
  app.require_subcommand(1);

  std::string inspect_path;
  bool inspect_json = false;
  CLI::App* inspect = app.add_subcommand("inspect", "Layers, head_dim, objectives, orthogonality, provenance");
  inspect->add_option("path", inspect_path, ".pt file, directory with the .pt pair, or .gguf")->required();
  inspect->add_flag("--json", inspect_json, "Print JSON");

  std::string from, to, tag;
  double k_clip = -1, v_clip = -1;
  CLI::App* convert_command = app.add_subcommand("convert", "Directory (.pt pair) <-> rotation .gguf, lossless");
  convert_command->add_option("from", from, "Directory with the .pt pair, or a .gguf")->required();
  convert_command->add_option("to", to, "A .gguf path, or a directory for the .pt pair")->required();
  for (CLI::App* command : {convert_command}) {
    command->add_option("--tag", tag, "Calibration tag to record (default: calibration.json's)");
    command->add_option("--k-clip", k_clip, "Key clip ratio to record (default 0.96)");
    command->add_option("--v-clip", v_clip, "Value clip ratio to record (default 0.92)");
  }

  std::string base, rotations, out;
  CLI::App* bake = app.add_subcommand("bake", "Copy a model GGUF byte for byte and add the rotations");
  bake->add_option("--base", base, "Model .gguf")->required()->check(CLI::ExistingFile);
  bake->add_option("--rotations", rotations, "Directory with the .pt pair, or a rotation .gguf")->required();
  bake->add_option("--out", out, "Output .gguf")->required();
  bake->add_option("--tag", tag, "Calibration tag to record (default: the rotations')");
  bake->add_option("--k-clip", k_clip, "Key clip ratio to record (default 0.96)");
  bake->add_option("--v-clip", v_clip, "Value clip ratio to record (default 0.92)");

  std::string a, b;
  bool diff_json = false;
  CLI::App* diff_command = app.add_subcommand("diff", "How far apart two rotation sets are (top-k eigen-subspace overlap)");
  diff_command->add_option("a", a, "Directory, .gguf or .pt")->required();
  diff_command->add_option("b", b, "Directory, .gguf or .pt")->required();
  diff_command->add_flag("--json", diff_json, "Print JSON");

  std::string entry, expect;
  CLI::App* manifest_command = app.add_subcommand("manifest", "Write an entry's manifest.json, or compare it with --expect");
  manifest_command->add_option("dir", entry, "Zoo entry directory (calibration.json, verify.json, rotation files)")->required()->check(CLI::ExistingDirectory);
  manifest_command->add_option("--expect", expect, "A committed manifest.json: report differences, exit 1 if any");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return command_line_exit(app, error, "oscar-zoo");
  }
  return report_errors("oscar-zoo", [&] {
    if (inspect->parsed()) {
      const nlohmann::json description = zoo::inspect_rotations(inspect_path);
      std::cout << (inspect_json ? description.dump(2) + "\n" : zoo::inspect_text(description));
    }
    if (convert_command->parsed()) convert(from, to, provenance_of(from, tag, k_clip, v_clip));
    if (bake->parsed()) {
      io::bake_rotation_gguf(base, io::read_rotation_pair(rotations), provenance_of(rotations, tag, k_clip, v_clip), out);
      std::printf("wrote %s\n", out.c_str());
    }
    if (diff_command->parsed()) diff(a, b, diff_json);
    if (manifest_command->parsed()) return manifest(entry, expect);
    return int(kExitOk);
  });
}
