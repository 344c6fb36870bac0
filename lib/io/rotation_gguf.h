// Rotations in GGUF, as the llama.cpp port reads them (reference doc §7): per layer i two F32 tensors,
// blk.{i}.attn_k_rot.weight and blk.{i}.attn_v_rot.weight, each holding the rotation TRANSPOSED (Rᵀ, so that
// ggml_mul_mat(rot, X) computes X·R): [d, d] per layer, [Hkv, d, d] for per-KV-head sets. Everything else lives
// in metadata under "oscar.":
//
//   oscar.format_version        uint32   this GGUF convention (1)
//   oscar.rotation_format       uint32   the .pt schema's format_version (1 per layer, 2 per KV head)
//   oscar.key_objective         string   e.g. "qqt_r_h_pbr"          oscar.value_objective  "sst_r_h_pbr"
//   oscar.composition           string   e.g. "r_h_pbr" (the objectives' suffix; "hadamard" for data-free)
//   oscar.granularity           string   "layer" | "per_kv_head"
//   oscar.head_dim              uint32   oscar.rotation_heads  uint32 (1, or Hkv per KV head)
//   oscar.layer_ids             int32[]
//   oscar.key_eigenvalues       float32[] [layers, heads, d]   oscar.value_eigenvalues (the same), so a
//                                         .pt → GGUF → .pt round trip is lossless
//   oscar.k_clip, oscar.v_clip  float32  the INT2 clip ratios the rotations were verified with
//   oscar.calibration_tag       string   e.g. "seq20000_prompt40_group8"
//   oscar.tool_version          string
//
// Two forms: a standalone rotations file (general.architecture "oscar-rotations"), and a model GGUF with the
// rotations baked in (every base key and tensor copied byte for byte, then the oscar.* keys and rot tensors).
#pragma once

#include <string>

#include "io/gguf.h"
#include "io/rotation_pair.h"

namespace oscar::io {

namespace rotation_gguf {
inline constexpr std::uint32_t kFormatVersion = 1;
inline constexpr const char* kPrefix = "oscar.";
inline constexpr const char* kStandaloneArchitecture = "oscar-rotations";
inline constexpr double kDefaultKeyClip = 0.96;
inline constexpr double kDefaultValueClip = 0.92;
/// "blk.<layer>.attn_<kind>_rot.weight", kind "k" or "v".
std::string tensor_name(int layer, char kind);
}  // namespace rotation_gguf

/// What the metadata records beyond the rotations themselves.
struct RotationProvenance {
  std::string calibration_tag;
  double key_clip = rotation_gguf::kDefaultKeyClip;
  double value_clip = rotation_gguf::kDefaultValueClip;
};

/// Throws InputError("<what>: ...") unless key and value cover the same layers with the same geometry.
void check_rotation_pair(const RotationPair& pair, const std::string& what);

/// Adds the oscar.* metadata and the rot tensors of `pair` to a writer.
void add_rotations(GgufWriter& writer, const RotationPair& pair, const RotationProvenance& provenance);

/// A standalone rotations file.
void write_rotation_gguf(const std::string& path, const RotationPair& pair, const RotationProvenance& provenance);

/// Copies every key and tensor of `base` byte for byte into `out` and adds the rotations. Throws InputError when
/// the base already holds oscar.* keys or rot tensors, or its block_count / head size disagree with the rotations.
void bake_rotation_gguf(const std::string& base, const RotationPair& pair, const RotationProvenance& provenance,
                        const std::string& out);

/// The rotations of a standalone or baked file; provenance fills `provenance` when given. Throws
/// InputError("<path>: ...") when the file has no oscar.* rotations or they are inconsistent.
RotationPair read_rotation_gguf(const std::string& path, RotationProvenance* provenance = nullptr);

/// True when the file is a GGUF holding oscar.* rotations (false for any other file, without throwing).
bool has_rotation_gguf_metadata(const GgufReader& reader);

}  // namespace oscar::io
