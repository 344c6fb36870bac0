// GQA decode attention over the mixed KV cache (reference doc §6): one pass over the full-precision
// segments (sink and recent window) and one over the INT2 history (dequantised row by row, never as a
// whole), each giving a partial softmax state (max m, sum of exponentials l, weighted value sum a), merged
// by log-sum-exp:  m = max(m1, m2),  l = l1·e^(m1−m) + l2·e^(m2−m),  a = a1·e^(m1−m) + a2·e^(m2−m),
// out = (a / l) · R_Vᵀ.  That is exactly softmax attention over [full-precision rows ‖ dequantised rows].
//
// Conventions (both implementations):
//  - q is [Hq, d] float32 for the token being decoded, NOT rotated: query head h is rotated by R_K of its
//    KV head h / (Hq/Hkv) inside, so callers pass the model's q after RoPE. Hq must be a multiple of Hkv.
//  - The new token's k and v must already be in the cache (append, then attend), as serving does.
//  - out is [Hq, d] float32, already un-rotated (multiplied by R_Vᵀ): ready for o_proj.
//  - scale ≤ 0 means 1/√d.
//
// decode_attention_reference reads like the spec and accumulates in double. decode_attention (the fast path)
// works in float32 with vectorisable loops, splits every KV head's rows into fixed chunks of `split_tokens`
// (INT2 chunks rounded to whole pages) processed on `threads` threads, and merges the chunks' states in a
// fixed order, so its output does not depend on the thread count. INT2 rows are not widened to float there:
// with one group per row (G = d), a byte of codes indexes a 256-entry table per byte position that holds
// Σ_k q[i + k·d/4]·code_k for the Hq/Hkv query heads at once, so a score costs d/4 lookups
// (q·k̂ = s·(Σ table − z·Σq)), and the value sum adds each row's weight p·s to the table entry of each of
// its bytes and expands the tables once per chunk (Σ_j p_j·v̂_j = Σ_entries W·code − Σ_j p_j·s_j·z_j).
// When K and V both have G = d, one kernel does scores, softmax and values of a chunk, with the tables cut
// into slices of a few byte positions (16 KiB, L1-resident) and one pass over the rows per slice.
// G = d/2 uses 16-entry tables per nibble, other group sizes or head ratios dequantise row by row.
// Tolerance against the reference, per output element: |fast − reference| ≤ 4e-7·(1 + max|logit|)·max|v̂|,
// where logit = scale·q̃·k̃ over the cached rows and v̂ the cached value elements: float32 logits carry an
// absolute error of a few ulps of their magnitude, which moves the softmax weights by as much (measured
// ≤ 1.3e-7·(1 + max|logit|)·max|v̂|; against dense attention in double ≤ 2e-6 relative to max|out|).
#pragma once

#include <cstdint>

#include "runtime/int2_quantize.h"
#include "runtime/mixed_cache.h"

namespace oscar::runtime {

struct AttentionOptions {
  float scale = 0.0f;        ///< ≤ 0: 1/√d
  int threads = 1;           ///< threads over (KV head, chunk) work items
  int split_tokens = 4096;   ///< rows per work item; fixed so results do not depend on `threads` (4096: measured ~10% faster INT2 decode than 2048)
  /// INT2 rows through lookup tables (when G = d or d/2 and Hq/Hkv ∈ {1, 2, 4, 8}); false: dequantise every
  /// row and use the full-precision loops (slower; for comparison).
  bool use_tables = true;
};

/// Scalar reference, in double. Throws std::invalid_argument for an empty cache or Hq not a multiple of Hkv.
void decode_attention_reference(const MixedKvCache& cache, const float* q, int q_heads, float* out,
                                double scale = 0.0);

/// Fast path, float32, multi-threaded.
void decode_attention(const MixedKvCache& cache, const float* q, int q_heads, float* out,
                      const AttentionOptions& options = {});

/// Building blocks shared by the fast decode path and teacher-forced attention (float32, fixed summation
/// order, written so that the compiler vectorises them).
namespace attention_detail {
/// Throws std::invalid_argument for an empty cache or a query-head count that is not a positive multiple
/// of the cache's KV heads (the checks both implementations make first).
void check_decode_arguments(const MixedKvCache& cache, int q_heads);
/// exp_nonpositive returns exactly 0 below this: smaller attention weights change the output by less than
/// 1e-22 relative, and their products fall into the subnormal range, where x86 arithmetic is ~100× slower.
inline constexpr float kExpFlushBelow = -60.0f;

/// Σ a[i]·b[i] with 8 interleaved partial sums combined in a fixed order.
inline float dot(const float* a, const float* b, int n) {
  float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) + tail;
}
/// y += alpha·x
inline void axpy(float alpha, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += alpha * x[i];
}
/// x[i] ← e^x[i] for x[i] ≤ 0 (softmax weights), a vectorisable polynomial within 2 ulp of std::exp
/// (0 below −87).
void exp_nonpositive(float* x, int n);
/// One INT2 row dequantised: x̂ = (code − zero)·scale, as dequantize_rows_reference computes it.
void dequantize_row(ConstInt2Rows row, const Int2Config& config, float* out);

}  // namespace attention_detail

}  // namespace oscar::runtime
