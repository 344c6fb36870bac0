// Calibration state files (HDF5): shard results for `oscar-calibrate merge` and checkpoints for resume.
//
//   /                      attrs format="oscar-calibration-state", format_version, tool_version, source,
//                                num_q_heads, num_kv_heads, head_dim, has_query, has_key_value,
//                                has_weighted_value
//   /layer_<L>/kv_head_<h> datasets (float64 [d, d], lower triangle): query_outer_sum, key_outer_sum,
//                                value_outer_sum, weighted_value_outer_sum, weighting_query_covariance
//                          datasets: first_pass_chunks, second_pass_chunks (int32 [n]),
//                                skipped_query_tokens (int64 [n, 2]: chunk, token)
//                          attrs query_tokens, key_value_tokens, weighted_tokens, skipped_tokens (int64),
//                                weight_sum (float64)
// Values are stored bit-exactly, so a resumed run ends with the same bits as an uninterrupted one.
#pragma once

#include <string>

#include "calib/calibration_state.h"

namespace oscar::calib {

namespace state_format {
inline constexpr const char* kFormatName = "oscar-calibration-state";
inline constexpr int kFormatVersion = 1;
}  // namespace state_format

/// Writes to "<path>.tmp" and renames it into place, so an interrupted save keeps the previous file.
void save_state(const std::string& path, const CalibrationState& state);

/// Throws InputError("<path>: <problem>") for a missing, foreign or malformed file.
CalibrationState load_state(const std::string& path);

}  // namespace oscar::calib
