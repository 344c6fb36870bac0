// RotationZoo `.pt` files: per-layer orthogonal rotations, as the OSCAR reference writes and SGLang loads.
//
//   { "format_version": 1 | 2, "objective": "qqt_r_h_pbr", "source_grouping": "layer" | "per_kv_head",
//     "layers": { <int layer_id>: { "layer_id": int, "rotation": fp32, "eigenvalues": fp32 }, ... } }
//
// Format 1 ("layer"): rotation [d, d], eigenvalues [d]. Format 2 ("per_kv_head"): rotation [Hkv, d, d],
// eigenvalues [Hkv, d]. A rotation R is applied to row vectors: x_rot = x · R.
#pragma once

#include <string>
#include <vector>

namespace oscar::io {

/// The constants of the file format, in one place.
namespace rotation_format {
inline constexpr int kLayerFormatVersion = 1;
inline constexpr int kPerKvHeadFormatVersion = 2;
inline constexpr const char* kLayerGrouping = "layer";
inline constexpr const char* kPerKvHeadGrouping = "per_kv_head";
}  // namespace rotation_format

struct LayerRotation {
  int layer_id = 0;
  int num_heads = 1;                 ///< 1 for format 1; Hkv for format 2
  int head_dim = 0;
  std::vector<float> rotation;       ///< [num_heads, d, d] row-major (for format 1: [d, d])
  std::vector<float> eigenvalues;    ///< [num_heads, d]
};

struct RotationSet {
  int format_version = rotation_format::kLayerFormatVersion;
  std::string objective;             ///< "<covariance>_<composition>" or "hadamard"
  std::string source_grouping = rotation_format::kLayerGrouping;
  std::vector<LayerRotation> layers; ///< ascending layer_id
};

/// Reads a zoo file (int or str layer keys). Throws InputError("<path>: <problem>") when malformed:
/// wrong schema or types, non-square rotation, shapes that disagree across layers.
RotationSet read_rotation_set(const std::string& path);

/// Writes a zoo file that `torch.load(path, weights_only=True)` accepts: int layer keys, fp32 contiguous
/// tensors, written to a temporary file and renamed into place.
void write_rotation_set(const std::string& path, const RotationSet& rotations);

}  // namespace oscar::io
