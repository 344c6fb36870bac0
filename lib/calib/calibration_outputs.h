// The files a calibration leaves in its output directory: one RotationZoo file per target
// (k_rotation_<objective>.pt, v_rotation_<objective>.pt, the reference names) and calibration.json.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/calibration_state.h"
#include "calib/method.h"
#include "calib/rotation_fit.h"
#include "io/file_digest.h"

namespace oscar::calib {

inline constexpr const char* kRecordFileName = "calibration.json";

struct FitOptions {
  std::string method = "qqt_sst";  ///< a name of method_names()
  linalg::Composition composition = linalg::Composition::kRHPbr;
  Granularity granularity = Granularity::kLayer;
};

struct OutputFile {
  std::string name;                       ///< "k_rotation_qqt_r_h_pbr.pt"
  io::RotationSet rotations;
  std::vector<LayerFitReport> reports;
};

/// Fits every target of options.method for the given layers ("hadamard" is not a fitted method).
std::vector<OutputFile> fit_outputs(const CalibrationState& state, const std::vector<int>& layer_ids,
                                    const FitOptions& options);

/// k_rotation_hadamard.pt and v_rotation_hadamard.pt.
std::vector<OutputFile> hadamard_outputs(const std::vector<int>& layer_ids, int head_dim);

/// The zoo tag "seq<T>_prompt<N>_group<G>".
std::string calibration_tag(std::int64_t tokens, std::int64_t prompts, int group_size);

/// What calibration.json says beyond the per-layer fit reports.
struct RunRecord {
  std::vector<io::FileDigest> inputs;
  std::string input_path;
  std::int64_t tokens = 0;    ///< per layer
  std::int64_t prompts = 0;   ///< sequences (from seq_lens; 0 when the dump has none)
  std::int64_t skipped_entries = 0;  ///< (token, KV head, layer) entries dropped for non-finite values
  int group_size = 0;
  nlohmann::json options;     ///< every option as given
  nlohmann::json geometry;
  nlohmann::json model;       ///< model identity when calibrating a model directly (null otherwise)
  double wall_seconds = 0.0;
};

nlohmann::json calibration_record(const RunRecord& run, const std::vector<OutputFile>& outputs);

/// Writes every rotation file and calibration.json into out_dir (created if needed). All files are
/// written under temporary names first and renamed only when every one succeeded, so a failure leaves
/// none of them behind.
void write_outputs(const std::string& out_dir, const std::vector<OutputFile>& outputs, const nlohmann::json& record);

}  // namespace oscar::calib
