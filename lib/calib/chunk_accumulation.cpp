#include "calib/chunk_accumulation.h"

#include <cmath>

#include "linalg/gram.h"

namespace oscar::calib {

namespace {

/// Tokens widened per block: 512 tokens × g query heads × d doubles is 2 MB for Qwen3-8B (g 4, d 128),
/// enough columns for dsyrk to run near its peak (measured 5% faster than 128-token blocks).
constexpr std::int64_t kTokensPerBlock = 512;

bool all_finite(const double* values, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(values[i])) return false;
  }
  return true;
}

/// [T, H, d] geometry of a chunk tensor.
struct RowLayout {
  std::int64_t tokens, heads, head_dim;
  explicit RowLayout(const HostTensor& tensor)
      : tokens(tensor.shape.at(0)), heads(tensor.shape.at(1)), head_dim(tensor.shape.at(2)) {}
  /// Flat offset of (token, head, 0).
  std::int64_t offset(std::int64_t token, std::int64_t head) const { return (token * heads + head) * head_dim; }
};

/// Copies `heads` consecutive heads of one token into column `column` onwards of `block` (d rows, one
/// column per head vector). Returns false when a value is not finite.
bool widen_token(const HostTensor& tensor, const RowLayout& layout, std::int64_t token, std::int64_t first_head,
                 std::int64_t heads, Matrix& block, std::int64_t column) {
  double* destination = block.data() + column * layout.head_dim;
  const std::int64_t count = heads * layout.head_dim;
  tensor.copy_to_double(layout.offset(token, first_head), count, destination);
  return all_finite(destination, count);
}

[[noreturn]] void throw_nonfinite(const ChunkTensors& chunk, const char* projection, std::int64_t token, int kv_head) {
  throw NonfiniteError("layer " + std::to_string(chunk.layer_id) + " chunk " + std::to_string(chunk.chunk_id) +
                       ": non-finite value in " + projection + " (token " + std::to_string(token) + ", kv head " +
                       std::to_string(kv_head) + "); use --skip-nonfinite to drop such tokens");
}

void accumulate_queries(HeadStatistics& head, const ChunkTensors& chunk, int kv_head, int group_size,
                        NonfinitePolicy policy, linalg::GramKernels kernels) {
  const RowLayout layout(*chunk.query);
  Matrix block(layout.head_dim, kTokensPerBlock * group_size);
  for (std::int64_t first = 0; first < layout.tokens; first += kTokensPerBlock) {
    const std::int64_t last = std::min(layout.tokens, first + kTokensPerBlock);
    std::int64_t columns = 0;
    for (std::int64_t token = first; token < last; ++token) {
      if (widen_token(*chunk.query, layout, token, std::int64_t(kv_head) * group_size, group_size, block, columns)) {
        columns += group_size;
        ++head.query_tokens;
      } else if (policy == NonfinitePolicy::kSkip) {
        head.skipped_query_tokens.insert({chunk.chunk_id, token});
        ++head.skipped_tokens;
      } else {
        throw_nonfinite(chunk, "q", token, kv_head);
      }
    }
    linalg::add_gram_lower(head.query_outer_sum, block, columns, kernels);
  }
}

/// Widens keys and values of tokens [first, last) of one KV head into the columns of keys/values and
/// returns how many columns it filled. Tokens with a non-finite k or v are an error or (kSkip) dropped and
/// counted; with skip_dropped_queries, tokens whose queries were dropped in the first pass are left out too.
std::int64_t widen_key_value_block(HeadStatistics& head, const ChunkTensors& chunk, const RowLayout& layout,
                                   int kv_head, std::int64_t first, std::int64_t last, bool skip_dropped_queries,
                                   NonfinitePolicy policy, Matrix& keys, Matrix& values) {
  std::int64_t columns = 0;
  for (std::int64_t token = first; token < last; ++token) {
    if (skip_dropped_queries && head.skipped_query_tokens.count({chunk.chunk_id, token})) continue;  // counted then
    const bool key_ok = widen_token(*chunk.key, layout, token, kv_head, 1, keys, columns);
    const bool value_ok = widen_token(*chunk.value, layout, token, kv_head, 1, values, columns);
    if (key_ok && value_ok) {
      ++columns;
    } else if (policy == NonfinitePolicy::kSkip) {
      ++head.skipped_tokens;
    } else {
      throw_nonfinite(chunk, key_ok ? "v" : "k", token, kv_head);
    }
  }
  return columns;
}

void accumulate_keys_values(HeadStatistics& head, const ChunkTensors& chunk, int kv_head, NonfinitePolicy policy,
                            linalg::GramKernels kernels) {
  const RowLayout layout(*chunk.key);
  Matrix keys(layout.head_dim, kTokensPerBlock);
  Matrix values(layout.head_dim, kTokensPerBlock);
  for (std::int64_t first = 0; first < layout.tokens; first += kTokensPerBlock) {
    const std::int64_t last = std::min(layout.tokens, first + kTokensPerBlock);
    const std::int64_t columns =
        widen_key_value_block(head, chunk, layout, kv_head, first, last, false, policy, keys, values);
    linalg::add_gram_lower(head.key_outer_sum, keys, columns, kernels);
    linalg::add_gram_lower(head.value_outer_sum, values, columns, kernels);
    head.key_value_tokens += columns;
  }
}

}  // namespace

void accumulate_first_pass(HeadStatistics& head, const ChunkTensors& chunk, int kv_head, int group_size,
                           const StatisticsMask& mask, NonfinitePolicy policy, linalg::GramKernels kernels) {
  if (mask.query) accumulate_queries(head, chunk, kv_head, group_size, policy, kernels);
  if (mask.key_value) accumulate_keys_values(head, chunk, kv_head, policy, kernels);
  head.first_pass_chunks.insert(chunk.chunk_id);
}

void accumulate_second_pass(HeadStatistics& head, const ChunkTensors& chunk, int kv_head, NonfinitePolicy policy,
                            linalg::GramKernels kernels) {
  const RowLayout layout(*chunk.key);
  const Matrix& weighting = head.weighting_query_covariance;
  Matrix keys(layout.head_dim, kTokensPerBlock);
  Matrix values(layout.head_dim, kTokensPerBlock);
  Matrix scratch;
  linalg::Vector weights;
  for (std::int64_t first = 0; first < layout.tokens; first += kTokensPerBlock) {
    const std::int64_t last = std::min(layout.tokens, first + kTokensPerBlock);
    const std::int64_t columns =
        widen_key_value_block(head, chunk, layout, kv_head, first, last, true, policy, keys, values);
    if (columns == 0) continue;
    linalg::quadratic_forms(weighting, keys, columns, weights, scratch, kernels);  // u_t = k_tᵀ·C̄_Q·k_t
    linalg::add_weighted_gram_lower(head.weighted_value_outer_sum, values, columns, weights, kernels);
    head.weight_sum += weights.sum();
    head.weighted_tokens += columns;
  }
  head.second_pass_chunks.insert(chunk.chunk_id);
}

}  // namespace oscar::calib
