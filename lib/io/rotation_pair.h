// The key and value rotation sets of one calibration, wherever they are stored: a zoo directory holding
// k_rotation_<objective>.pt and v_rotation_<objective>.pt (the reference's file names), or a rotation GGUF.
#pragma once

#include <string>

#include "io/rotation_set.h"

namespace oscar::io {

struct RotationPair {
  RotationSet key;
  RotationSet value;
};

/// The one k_rotation_*.pt or v_rotation_*.pt (prefix "k_rotation_" / "v_rotation_") in `dir`. Throws
/// InputError("<dir>: ...") when there is none or several.
std::string find_rotation_file(const std::string& dir, const std::string& prefix);

/// From a directory (the .pt pair) or a .gguf file (io/rotation_gguf.h). Throws InputError naming the file.
RotationPair read_rotation_pair(const std::string& path);

/// Writes dir/k_rotation_<key objective>.pt and dir/v_rotation_<value objective>.pt (dir created if needed);
/// returns the two paths.
std::pair<std::string, std::string> write_rotation_pair(const std::string& dir, const RotationPair& pair);

}  // namespace oscar::io
