#include "calib/calibration_outputs.h"

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/version.h"
#include "io/rotation_set.h"

namespace oscar::calib {

namespace fs = std::filesystem;

namespace {

std::string rotation_file_name(Target target, const std::string& objective) {
  return std::string(target_prefix(target)) + "_rotation_" + objective + ".pt";
}

nlohmann::json layer_reports(const std::vector<LayerFitReport>& reports) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& report : reports) {
    layers.push_back({{"layer_id", report.layer_id},
                      {"min_eigenvalue", report.min_eigenvalue},
                      {"max_eigenvalue", report.max_eigenvalue},
                      {"orthogonality_error", report.orthogonality_error}});
  }
  return layers;
}

}  // namespace

std::vector<OutputFile> fit_outputs(const CalibrationState& state, const std::vector<int>& layer_ids,
                                    const FitOptions& options) {
  std::vector<OutputFile> outputs;
  for (const FittingTarget& target : method_targets(options.method)) {
    OutputFile output;
    output.rotations = fit_rotations(state, layer_ids, target, options.composition, options.granularity, &output.reports);
    output.name = rotation_file_name(target.target, output.rotations.objective);
    outputs.push_back(std::move(output));
  }
  return outputs;
}

std::vector<OutputFile> hadamard_outputs(const std::vector<int>& layer_ids, int head_dim) {
  std::vector<OutputFile> outputs;
  for (Target target : {Target::kKey, Target::kValue}) {
    OutputFile output;
    output.rotations = hadamard_rotations(layer_ids, head_dim, &output.reports);
    output.name = rotation_file_name(target, output.rotations.objective);
    outputs.push_back(std::move(output));
  }
  return outputs;
}

std::string calibration_tag(std::int64_t tokens, std::int64_t prompts, int group_size) {
  return "seq" + std::to_string(tokens) + "_prompt" + std::to_string(prompts) + "_group" + std::to_string(group_size);
}

nlohmann::json calibration_record(const RunRecord& run, const std::vector<OutputFile>& outputs) {
  nlohmann::json inputs = nlohmann::json::array();
  for (const auto& digest : run.inputs) {
    inputs.push_back({{"path", digest.path}, {"size", digest.size}, {"sha256", digest.sha256}});
  }
  nlohmann::json files = nlohmann::json::object();
  for (const auto& output : outputs) {
    files[output.name] = {{"objective", output.rotations.objective},
                          {"format_version", output.rotations.format_version},
                          {"source_grouping", output.rotations.source_grouping},
                          {"layers", layer_reports(output.reports)}};
  }
  nlohmann::json record = {{"tool", "oscar-calibrate"},
                           {"tool_version", kVersion},
                           {"input", run.input_path},
                           {"inputs", inputs},
                           {"geometry", run.geometry},
                           {"tokens", run.tokens},
                           {"prompts", run.prompts},
                           {"skipped_nonfinite_entries", run.skipped_entries},
                           {"tag", calibration_tag(run.tokens, run.prompts, run.group_size)},
                           {"options", run.options},
                           {"outputs", files}};  // no wall time: the record must be bit-reproducible
  if (!run.model.is_null()) record["model"] = run.model;
  return record;
}

void write_outputs(const std::string& out_dir, const std::vector<OutputFile>& outputs, const nlohmann::json& record) {
  std::error_code error;
  fs::create_directories(out_dir, error);
  if (error) throw InputError(out_dir + ": cannot create output directory: " + error.message());
  // Everything is written into a staging directory under its final name (a .pt names its zip folder after
  // its file, as torch.save does), then renamed into place together.
  const fs::path staging_dir = fs::path(out_dir) / ".staging";
  fs::remove_all(staging_dir, error);
  fs::create_directories(staging_dir, error);
  if (error) throw InputError(staging_dir.string() + ": cannot create: " + error.message());
  std::vector<std::pair<fs::path, fs::path>> staged;  // temporary -> final
  try {
    for (const auto& output : outputs) {
      const fs::path staging = staging_dir / output.name;
      io::write_rotation_set(staging.string(), output.rotations);
      staged.emplace_back(staging, fs::path(out_dir) / output.name);
    }
    const fs::path record_staging = staging_dir / kRecordFileName;
    staged.emplace_back(record_staging, fs::path(out_dir) / kRecordFileName);
    std::ofstream record_file(record_staging);
    record_file << record.dump(2) << "\n";
    record_file.close();
    if (!record_file) throw InputError(record_staging.string() + ": cannot write");
  } catch (...) {
    fs::remove_all(staging_dir, error);
    throw;
  }
  for (const auto& [staging, final_path] : staged) fs::rename(staging, final_path);
  fs::remove_all(staging_dir, error);
}

}  // namespace oscar::calib
