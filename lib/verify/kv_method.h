// The KV-cache methods oscar-verify compares, all at the same windows and group size (reference doc §6, §9):
//
//   fp        no quantization: the decoder's own cache (the baseline every other method is measured against)
//   naive     INT2 without rotation (per-token asymmetric min/max, the OSCAR storage format)
//   hadamard  INT2 after the data-free normalised Hadamard rotation H (QuaRot-like)
//   oscar     INT2 after the calibrated rotations given with --rotations (.pt pair or rotation GGUF)
//
// and the baselines of the field (runtime/kv_quantizer.h; definitions and sources in docs/METHODS.md), scored
// teacher-forced through verify/quantizer_kv_attention.h:
//
//   naive-sym        per-token symmetric INT2 (the OSCAR paper's "Naive INT2")
//   naive-asym       per-token asymmetric INT2 = naive on the generic path (a cross-check)
//   quarot           Hadamard, then the OSCAR INT2 format = hadamard on the generic path
//   kivi2            KIVI-2: keys per channel over 32-token groups, values per token
//   turboquant-k3v3  TurboQuant, 3 bits for keys and values (+ a 16-bit norm per row)
//   turboquant-k2v2  TurboQuant, 2 bits
//   eoptshrinkq      low-rank part by optimal shrinkage (BBP rank) + TurboQuant 2-bit residual
//
// A method is a name and, for the INT2 runtime ones, one key and one value rotation per layer, or for the
// baselines a key and a value quantizer.
#pragma once

#include <string>
#include <vector>

#include <memory>

#include "model/model_config.h"
#include "runtime/kv_quantizer.h"
#include "runtime/mixed_cache.h"
#include "runtime/rotation.h"

namespace oscar::verify {

/// Per-layer rotations for keys and values, and where they came from.
struct LayerRotations {
  std::vector<runtime::Rotation> key;    ///< [n_layers]
  std::vector<runtime::Rotation> value;  ///< [n_layers]
  std::vector<std::string> files;        ///< the files read (empty for built-in rotations)
  std::string key_objective, value_objective;
};

struct KvMethod {
  std::string name;
  bool full_precision = false;  ///< true: the decoder's own cache, no INT2 anywhere
  LayerRotations rotations;     ///< INT2 runtime methods (naive, hadamard, oscar)
  std::shared_ptr<const runtime::KvQuantizer> key_quantizer, value_quantizer;  ///< the baselines
  bool uses_quantizer() const { return key_quantizer != nullptr; }
};

/// Every method name, in the order above.
const std::vector<std::string>& known_methods();

/// A comma-separated list ("fp,naive,oscar") in the order given. Throws oscar::UsageError for an unknown or
/// repeated name or an empty list.
std::vector<std::string> parse_method_list(const std::string& list);

/// Rotations from a RotationZoo directory (exactly one k_rotation_*.pt and one v_rotation_*.pt) or a rotation
/// GGUF (blk.{i}.attn_k_rot.weight / attn_v_rot.weight, F32, each the rotation transposed: reference §7).
/// Every layer of the model must be present with the model's head_dim (per-KV-head sets: its KV head count).
/// Throws oscar::InputError naming the file and the problem (missing layer, wrong size, not orthogonal to
/// within 1e-3).
LayerRotations load_rotations(const std::string& path, const model::ModelConfig& config);

/// The methods of `names` for this model; `oscar` needs `calibrated` (UsageError when it is null). The
/// baselines take their group size, clip ratios and scale type from `cache` (the same as the INT2 methods');
/// `on_gpu` (the model runs on CUDA) uses the CUDA runtime's versions of the per-row baselines when this build
/// has them (naive-sym, TurboQuant), the CPU classes otherwise.
std::vector<KvMethod> make_methods(const std::vector<std::string>& names, const model::ModelConfig& config,
                                   const LayerRotations* calibrated,
                                   const runtime::MixedCacheConfig& cache = runtime::MixedCacheConfig{},
                                   bool on_gpu = false);

}  // namespace oscar::verify
