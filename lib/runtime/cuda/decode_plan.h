// How a decode splits the cache among blocks, for either kernel family (plain C++: the tests check it without
// a GPU).
//
// Why one wave: decode at batch 1 streams the cache once, so the time is the bytes over the bandwidth the
// resident blocks draw, plus what each block spends outside the stream (the query fragments, the combination
// of its warps, its partial) and the merge over the splits. As many blocks as fit on the device at once, each
// with an equal share of the INT2 tokens, keep every SM streaming until the end without a partly filled last
// wave (the first sizing, 8 blocks per SM for 3 resident, ran 2.6 waves at 128K) and make the fewest partials
// for the merge to read. The bf16 splits of a mixed cache (sink and window, a few hundred tokens) take
// their slots in the same wave.
#pragma once

#include <algorithm>
#include <cstdint>

#include "runtime/cuda/decode_mma_layout.cuh"

namespace oscar::runtime::gpu::detail {

struct DecodeSplitPlan {
  std::int64_t int2_chunk = 0;  ///< INT2 tokens per split, a multiple of the 16-token tile
  int int2_splits = 0;
  std::int64_t fp_chunk = 0;  ///< bf16 tokens per split
  int fp_splits = 0;
};

inline constexpr std::int64_t kMinInt2Chunk = 256;  ///< 4 tiles per warp: shorter splits are mostly set-up
inline constexpr std::int64_t kMinFpChunk = 128;    ///< 2 tiles per warp

/// Splits of `int2_tokens` INT2 and `fp_tokens` bf16 tokens for a grid whose every split is `blocks_per_split`
/// blocks (KV heads × head launches), on a device that holds `resident_blocks` of them at once.
inline DecodeSplitPlan plan_decode_splits(std::int64_t int2_tokens, std::int64_t fp_tokens, int blocks_per_split,
                                              int resident_blocks) {
  auto divide_up = [](std::int64_t a, std::int64_t b) { return (a + b - 1) / b; };
  const std::int64_t splits_in_wave = std::max<std::int64_t>(1, resident_blocks / std::max(blocks_per_split, 1));
  DecodeSplitPlan plan;
  if (int2_tokens <= 0) {
    plan.fp_chunk = std::max(kMinFpChunk, divide_up(std::max<std::int64_t>(fp_tokens, 1), splits_in_wave));
  } else {
    // The bf16 splits take at most a quarter of the wave (a long window or many KV heads would otherwise leave
    // the INT2 segment one split per KV head).
    const std::int64_t fp_share = std::max<std::int64_t>(1, splits_in_wave / 4);
    plan.fp_chunk = std::max(kMinFpChunk, divide_up(fp_tokens, fp_share));
    const std::int64_t fp_splits = divide_up(fp_tokens, plan.fp_chunk);
    const std::int64_t int2_splits = std::max<std::int64_t>(1, splits_in_wave - fp_splits);
    const std::int64_t chunk = divide_up(int2_tokens, int2_splits);
    plan.int2_chunk = std::max(kMinInt2Chunk, divide_up(chunk, mma::kTileTokens) * mma::kTileTokens);
    plan.int2_splits = int(divide_up(int2_tokens, plan.int2_chunk));
  }
  plan.fp_splits = int(divide_up(fp_tokens, plan.fp_chunk));
  return plan;
}

}  // namespace oscar::runtime::gpu::detail
