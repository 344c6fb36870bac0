// INT2 pack files (`oscar-int2 pack`): KV rows in the OSCAR INT2 format as a flat torch.save dict that
// PyTorch reads with torch.load(path, weights_only=True):
//   codes  uint8 [T, H, d/4]       quartered packing (byte i: elements i, i+d/4, i+d/2, i+3d/4)
//   scales float32|float16 [T, H, groups]    zeros: the same     (x̂ = (code − zero) · scale)
//   head_dim, group_size, layer (int); clip_ratio (0-d float64); scale_type "float32"|"float16";
//   encoding "minmax"|"lloyd_max"; kind "k"|"v"; rotation (objective of the rotation file, or "none")
// Rows are in the rotated basis (x · R); unpack multiplies by Rᵀ to return to the model's basis.
#pragma once

#include <string>

#include "runtime/int2_pack.h"

namespace oscar::io {

struct Int2PackInfo {
  std::string kind = "k";
  int layer = 0;
  std::string rotation = "none";
};

void write_int2_pack(const std::string& path, const runtime::PackedRows& packed, const Int2PackInfo& info);

/// Throws InputError("<path>: <problem>") for a missing key, a wrong dtype or inconsistent shapes.
runtime::PackedRows read_int2_pack(const std::string& path, Int2PackInfo* info);

}  // namespace oscar::io
