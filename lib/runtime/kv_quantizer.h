// KV-cache quantizers from the literature, to compare with OSCAR at equal windows: the sink and the recent
// window stay full precision (mixed_cache.h), and a quantizer decides what is stored for the compressed segment
// in between and what attention reads back from it (reference doc §9).
//
// Methods (make_kv_quantizer names; definitions in baseline_quantizers.h):
//   naive-sym    per-token symmetric 2-bit, mid-rise levels, float16 scale, no rotation
//   naive-asym   the OSCAR INT2 format (int2_format.h) without rotation: the paper's "naive INT2" row format
//   quarot       normalised Walsh–Hadamard rotation, then the OSCAR INT2 format (data-free, QuaRot-like)
//   kivi2        KIVI 2-bit: keys per channel over token groups, values per token over channel groups
//   turboquant   TurboQuant (MSE variant): randomized Hadamard + Gaussian Lloyd–Max scalar codes + norm
//   eoptshrinkq  low-rank part by optimal singular-value shrinkage + TurboQuant-coded residual
// Every method reports the bits it stores, everything included (codes, scales, zero-points, norms, factors),
// so that bits per element are compared honestly.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/int2_format.h"
#include "runtime/mixed_cache.h"

namespace oscar::runtime {

/// What a method stores for the compressed segment of one layer's keys or values and what attention reads back.
/// Implementations are stateless after construction (const, deterministic, safe to share between threads).
class KvQuantizer {
 public:
  virtual ~KvQuantizer() = default;
  /// rows: [tokens, heads, d] float32 (post-RoPE keys, or values) of the compressed segment, oldest first, for
  /// one layer and one kind. Writes the rows attention reads back (same layout) into `out` (which may not alias
  /// `rows`) and returns the bits the method stores for them in total (codes, scales, zero-points, norms,
  /// low-rank factors: everything). tokens must be a multiple of granule(). Throws std::invalid_argument for
  /// bad dimensions or a non-finite input.
  virtual double reconstruct(const float* rows, int tokens, int heads, int d, float* out) const = 0;
  /// Tokens that become compressed together (1 for per-token methods; KIVI keys: its token group). The caller
  /// compresses only whole granules.
  virtual int granule() const { return 1; }
  /// True when a token's stored value depends on tokens outside its granule (eOptShrinkQ: the whole segment).
  virtual bool whole_sequence() const { return false; }
};

/// Settings of all methods; each reads only its own.
struct QuantizerOptions {
  /// naive-sym, naive-asym, quarot: elements per scale group of a row; 0 means d (one group per row).
  /// naive-asym and quarot accept only d, 64 or 32 (the INT2 format's groups).
  int group_size = 0;
  /// naive-asym and quarot: clip ratio, scale type and encoding of the INT2 format per kind (head_dim and
  /// group_size are replaced by d and group_size). Defaults: the mixed cache's (clip 0.96 K / 0.92 V, float32
  /// scales: 2.5 bits per element at G = 128; float16 scales give 2.25).
  Int2Config key_int2 = MixedCacheConfig{}.key_int2;
  Int2Config value_int2 = MixedCacheConfig{}.value_int2;
  /// kivi2: tokens per key group (per-channel quantisation, the granule) and channels per value group
  /// (min(kivi_group, d)). KIVI's default is 32.
  int kivi_group = 32;
  /// turboquant: bits per coordinate, 1..8 (3 = the reference's "K3V3").
  int turboquant_bits = 3;
  /// turboquant and eoptshrinkq: seed of the random signs of the randomized Hadamard transform; each head
  /// derives its own from it (so the transform is fixed per head, data-free and reproducible).
  std::uint64_t seed = 0x0A5CA2B17E5ull;
  /// eoptshrinkq: TurboQuant bits of the residual (1..8), and a cap on the low-rank part's rank (0: none; the
  /// rank is otherwise what the BBP threshold keeps).
  int eoptshrinkq_residual_bits = 2;
  int eoptshrinkq_max_rank = 0;
};

/// The method called `name` (see the list above) for keys or values. Throws std::invalid_argument for an
/// unknown name or options out of range.
std::unique_ptr<KvQuantizer> make_kv_quantizer(const std::string& name, KvKind kind, const QuantizerOptions& options);

/// Every name make_kv_quantizer accepts, in the order above.
std::vector<std::string> kv_quantizer_names();

}  // namespace oscar::runtime
