// Adding one chunk of activations to one KV head's statistics: the hot loop of calibration.
//
// Tokens are widened to double a block at a time (never a whole chunk) and added with a symmetric
// rank-k update, so memory stays at one block per thread whatever the chunk size. Each head is
// updated by one thread in token order, so results are bit-identical for any thread count.
#pragma once

#include <cstdint>
#include <string>

#include "calib/head_statistics.h"
#include "core/error.h"
#include "core/host_tensor.h"
#include "linalg/gram.h"

namespace oscar::calib {

enum class NonfinitePolicy { kError, kSkip };

/// One chunk of one layer as read from a dump: [T, H_local, d] tensors (null when not needed).
struct ChunkTensors {
  int layer_id = 0;
  int chunk_id = 0;
  const HostTensor* query = nullptr;
  const HostTensor* key = nullptr;
  const HostTensor* value = nullptr;
};

/// A NaN or infinity in the input, named by layer, chunk, projection, token and KV head.
class NonfiniteError : public InputError {
 public:
  using InputError::InputError;
};

/// First pass: query sums (mask.query) and key/value sums (mask.key_value) of local KV head
/// `kv_head` (an index into the chunk's head axis); group_size = Hq / Hkv.
/// `kernels` chooses the Gram kernels (linalg/gram.h): the OpenBLAS default, or Eigen's for callers beside
/// other OpenBLAS users.
void accumulate_first_pass(HeadStatistics& head, const ChunkTensors& chunk, int kv_head, int group_size,
                           const StatisticsMask& mask, NonfinitePolicy policy,
                           linalg::GramKernels kernels = linalg::GramKernels::kOpenBlas);

/// Second pass: Σ u·v·vᵀ and Σ u with u = kᵀ·C̄_Q·k, C̄_Q = head.weighting_query_covariance (set by
/// the caller before the pass). Tokens in head.skipped_query_tokens are left out.
void accumulate_second_pass(HeadStatistics& head, const ChunkTensors& chunk, int kv_head, NonfinitePolicy policy,
                            linalg::GramKernels kernels = linalg::GramKernels::kOpenBlas);

}  // namespace oscar::calib
