// What `oscar-zoo inspect` shows about a rotation file or set: layers, head_dim, objectives, granularity,
// orthogonality of every matrix, eigenvalue ranges, and the provenance the file records (GGUF oscar.*
// metadata, or calibration.json beside .pt files).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace oscar::zoo {

/// PATH: one .pt zoo file, a directory with the .pt pair, or a .gguf (standalone or baked). Throws
/// oscar::InputError naming the file when it is none of them or is malformed.
nlohmann::json inspect_rotations(const std::string& path);

/// inspect_rotations as indented lines for a terminal.
std::string inspect_text(const nlohmann::json& description);

}  // namespace oscar::zoo
