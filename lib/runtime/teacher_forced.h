// Teacher-forced attention over the mixed cache, for scoring and perplexity: for a whole sequence at once,
// every position t gets the attention output it would get when decoded (reference doc §6).
//
//  - Positions t < P (the prefill chunk) attend causally to positions 0..t at full precision (the rotated
//    rows as the cache stores them, bf16 by default), as prefill attends to its own chunk.
//  - Positions t ≥ P attend to exactly the cache decode_attention sees after appending tokens 0..t
//    (prefill of the first P, then one append per token): the sink 0..S0−1 and the recent window in full
//    precision, the demoted tokens S0 .. S0+m(t)−1 in INT2, m(t) = 8·⌊(t+1−S0−W)/8⌋ once t+1−S0 ≥ W+8
//    (else 0). Token t itself is in the window (for W ≥ 8).
//
// Because a token is demoted from its stored full-precision row and quantisation is per row, its INT2 value
// does not depend on when it is demoted: every token is rotated, stored and quantised once, and each
// position picks for each earlier token the full-precision or the INT2 version. Cost O(T²·Hq·d), no cache
// rebuilt per position. Results equal step-by-step decode_attention up to float32 rounding (tested).
#pragma once

#include "runtime/mixed_cache.h"
#include "runtime/rotation.h"

namespace oscar::runtime {

struct TeacherForcedOptions {
  int prefill_tokens = 0;  ///< P, 0 ≤ P ≤ T (0: every position is a decode step)
  float scale = 0.0f;      ///< ≤ 0: 1/√d
  int threads = 1;
};

/// Number of INT2 (demoted) tokens in the cache after appending `tokens` tokens through the demotion rule.
int demoted_tokens(const MixedCacheConfig& config, int tokens);

/// q is [T, Hq, d], k and v [T, Hkv, d], float32, unrotated (as for MixedKvCache::append and
/// decode_attention); out is [T, Hq, d], un-rotated by R_Vᵀ. Hq must be a multiple of Hkv.
void teacher_forced_attention(const MixedCacheConfig& config, const Rotation& key_rotation,
                              const Rotation& value_rotation, const float* q, int q_heads, const float* k,
                              const float* v, int tokens, float* out, const TeacherForcedOptions& options = {});

}  // namespace oscar::runtime
