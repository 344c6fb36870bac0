// The manifest of a zoo entry (zoo/<model>/<tag>/manifest.json): what the entry holds and what produced it.
//
//   { "manifest_version": 1, "entry": "<model>/<tag>",
//     "files": [{"name", "bytes", "sha256"}, ...],          every file of the entry but the manifest, by name
//     "model": {"identity_sha256", "description", "files"},  from verify.json (description + weight digests)
//     "data": [{"path", "bytes", "sha256"}, ...],            calibration inputs that are not model files
//     "calibration": {"options", "tag"},                     from calibration.json
//     "verify": {"options", "summary", "budget"} }           from verify.json
//
// Everything in it is derived from the entry's files, so regenerating an entry bit for bit gives the same
// manifest, and comparing manifests compares every file.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace oscar::zoo {

namespace manifest_format {
inline constexpr int kVersion = 1;
inline constexpr const char* kFileName = "manifest.json";
inline constexpr const char* kCalibrationRecord = "calibration.json";
inline constexpr const char* kVerifyReport = "verify.json";
}  // namespace manifest_format

/// Builds the manifest of the entry directory `dir` (needs calibration.json and verify.json there). Throws
/// oscar::InputError naming the file when one is missing or malformed.
nlohmann::json build_manifest(const std::string& dir);

/// build_manifest, written to dir/manifest.json (atomically); returns it.
nlohmann::json write_manifest(const std::string& dir);

/// The differences between two manifests, one line each ("files: k_rotation_x.pt: sha256 a… != b…",
/// "verify.summary differs", "only in A: x"); empty when equal.
std::vector<std::string> compare_manifests(const nlohmann::json& expected, const nlohmann::json& actual);

}  // namespace oscar::zoo
