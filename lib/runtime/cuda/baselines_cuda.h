// CUDA versions of the KV-cache baselines that are per-row transforms (runtime/baseline_quantizers.h), behind
// runtime::KvQuantizer: host rows in, host rows out (each call uploads, runs the kernel, downloads, on the
// default stream). This header needs no CUDA headers. Library: oscar_runtime_cuda_baselines (links
// oscar_runtime for the host parts it shares with the CPU classes: argument checks, the TurboQuant signs and
// the Lloyd–Max codebook).
//
//   naive-sym    CudaNaiveSymmetricQuantizer: one warp per scale group.
//   turboquant   CudaTurboQuantizer: one thread block per row, the row in shared memory as float64.
//
// Exactness: BIT-IDENTICAL to the CPU classes (NaiveSymmetricQuantizer, TurboQuantizer) on the same input —
// the same float32 output bits and the same bits count — not merely within a tolerance. Both kernels perform
// the CPU code's IEEE operations (float64 where it computes in double, float32 where it uses float), in its
// order, rounded to nearest, without fused multiply-adds (explicit __d*_rn / __f*_rn intrinsics, and
// --fmad=false); TurboQuant's signs and Lloyd–Max thresholds and levels are the CPU objects' doubles, uploaded
// as they are; see baselines_row.cuh for the details (the sum of squares is sequential, as on the CPU; the
// Walsh–Hadamard stages are parallel, which cannot change a stage's result).
//
// Errors: the CPU classes' std::invalid_argument, with their messages, for bad dimensions, a group size that
// does not divide d, d not a power of two (turboquant), bits out of 1..8, or a non-finite input; in addition
// std::invalid_argument for turboquant with d > 4096 (the row must fit in shared memory). CUDA failures,
// including no device, throw std::runtime_error("<what>: <CUDA error>") from reconstruct() (construction needs
// no device; tokens = 0 touches no device). Stateless after construction: const and safe to share between
// threads, like the CPU classes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/kv_quantizer.h"
#include "runtime/lloyd_max.h"

namespace oscar::runtime::gpu {

/// "naive-sym" on the GPU: runtime::NaiveSymmetricQuantizer (per row, groups of G elements, G = d by default;
/// s = max|x|/1.5 stored float16; levels {−3/2, −1/2, 1/2, 3/2}·s chosen against the stored s). Bits per
/// group: 2·G + 16.
class CudaNaiveSymmetricQuantizer final : public KvQuantizer {
 public:
  explicit CudaNaiveSymmetricQuantizer(int group_size) : group_size_(group_size) {}  ///< 0: G = d
  double reconstruct(const float* rows, int tokens, int heads, int d, float* out) const override;

 private:
  int group_size_;
};

/// "turboquant" on the GPU: runtime::TurboQuantizer (MSE variant: norm in float64, stored float16; head h's
/// randomized Hadamard RandomizedHadamard(d, head_seed(seed, h)); Gaussian Lloyd–Max codes of `bits` bits).
/// d a power of two up to 4096. Bits per row: bits·d + 16.
class CudaTurboQuantizer final : public KvQuantizer {
 public:
  /// Throws std::invalid_argument unless 1 ≤ bits ≤ 8 (as TurboQuantizer).
  CudaTurboQuantizer(int bits, std::uint64_t seed);
  double reconstruct(const float* rows, int tokens, int heads, int d, float* out) const override;

 private:
  GaussianLloydMax codebook_;
  std::uint64_t seed_;
};

/// The CUDA version of make_kv_quantizer(name, kind, options), constructed from the same options (naive-sym:
/// group_size; turboquant: turboquant_bits and seed), or nullptr for a method without a CUDA version. Throws
/// std::invalid_argument as make_kv_quantizer does for an unknown name, a negative group size or bits out of
/// range.
std::unique_ptr<KvQuantizer> make_cuda_kv_quantizer(const std::string& name, KvKind kind,
                                                    const QuantizerOptions& options);

/// The names make_cuda_kv_quantizer returns a quantizer for: {"naive-sym", "turboquant"}.
std::vector<std::string> cuda_kv_quantizer_names();

}  // namespace oscar::runtime::gpu
