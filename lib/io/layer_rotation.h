// One layer of a RotationZoo file as the runtime applies it (runtime::Rotation), per layer or per KV head.
#pragma once

#include <string>

#include "runtime/rotation.h"

namespace oscar::io {

/// Throws InputError("<path>: ...") when the file is malformed or has no layer `layer_id`. objective, when
/// given, receives the file's objective (e.g. "qqt_r_h_pbr").
runtime::Rotation read_layer_rotation(const std::string& path, int layer_id, std::string* objective = nullptr);

}  // namespace oscar::io
