// The mixed-precision KV cache of one sequence and one layer, as OSCAR serving keeps it (reference doc §6).
//
// Positions 0 … S0−1 are the sink, kept in full precision forever. Later tokens enter the recent window
// (full precision); whenever the window reaches W + 8 tokens, its 8 oldest tokens are demoted to INT2, so
// after every append it holds W … W+7 tokens (fewer only while fewer than W+8 tokens followed the sink).
// Sequence order is therefore  [sink | INT2 history | recent window].
//
// Rows are stored rotated: k·R_K and v·R_V (rotation.h), per layer or per KV head. Full-precision rows are
// bfloat16 by default, as serving stores them (float32 on request, to separate INT2 error from bf16
// rounding). A token is demoted from its stored full-precision value (the bf16 row widened to float, as
// SGLang demotes from its BF16 cache) with the INT2 format of int2_format.h (clip ratios 0.96 for K, 0.92
// for V by default). Since quantisation is per row, a token's INT2 value depends only on its stored row,
// never on when it is demoted. The INT2 history lives in fixed-size pages of `block_tokens` tokens,
// allocated as it grows; within a page rows are head-major ([Hkv][block][…]).
//
// A cache that never demotes (a 16-bit cache on the same code path, for benchmarks and as a baseline):
// MixedCacheConfig::full_precision_only(), which makes the sink unbounded.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "core/dtype.h"
#include "runtime/int2_format.h"
#include "runtime/int2_quantize.h"
#include "runtime/rotation.h"

namespace oscar::runtime {

/// Tokens demoted at once, and the granule of S0, W and the page size.
inline constexpr int kDemotionStep = 8;

enum class FullPrecisionType : std::uint8_t { kBFloat16, kFloat32 };
enum class KvKind : std::uint8_t { kKey, kValue };

struct MixedCacheConfig {
  /// Sink size that is never reached: every token stays full precision.
  static constexpr int kUnbounded = 1 << 30;

  int kv_heads = 8;         ///< Hkv
  int head_dim = 128;       ///< d
  int sink_tokens = 64;     ///< S0, a multiple of 8 (0 allowed)
  int recent_tokens = 256;  ///< W, a multiple of 8 (0 allowed: then even a new token may be INT2 at once)
  int block_tokens = 64;    ///< tokens per INT2 page, a positive multiple of 8
  Int2Config key_int2{128, 128, int2_format::kDefaultKeyClipRatio, ScaleType::kFloat32, Encoding::kMinMax};
  Int2Config value_int2{128, 128, int2_format::kDefaultValueClipRatio, ScaleType::kFloat32, Encoding::kMinMax};
  FullPrecisionType full_precision = FullPrecisionType::kBFloat16;
  int threads = 1;  ///< threads for bulk work (prefill); a decode append is single-threaded

  /// Defaults (S0 64, W 256, pages of 64, clip 0.96/0.92, G = d, float32 scales) for these dimensions.
  static MixedCacheConfig make(int kv_heads, int head_dim);
  /// Same dimensions, nothing ever demoted (sink unbounded): the 16-bit baseline.
  static MixedCacheConfig full_precision_only(int kv_heads, int head_dim);

  /// Throws std::invalid_argument when inconsistent (sizes, multiples of 8, INT2 head_dim ≠ d, …).
  void validate() const;
};

/// Bytes holding tokens (not counting spare capacity) and bytes allocated.
struct CacheMemory {
  std::int64_t full_precision_bytes = 0;  ///< sink + recent rows, K and V
  std::int64_t int2_bytes = 0;            ///< INT2 rows (codes, scales, zeros), K and V
  std::int64_t allocated_bytes = 0;       ///< everything allocated, including spare capacity and page tails
  std::int64_t used_bytes() const { return full_precision_bytes + int2_bytes; }
};

/// Full-precision storage element bytes, and conversion of n elements to and from float.
inline std::size_t full_precision_bytes(FullPrecisionType type) { return type == FullPrecisionType::kFloat32 ? 4 : 2; }
void store_full_precision(const float* src, std::size_t n, FullPrecisionType type, void* dst);
inline void widen_full_precision(const void* src, std::size_t n, FullPrecisionType type, float* dst) {
  if (type == FullPrecisionType::kFloat32) {
    std::memcpy(dst, src, n * sizeof(float));
    return;
  }
  const auto* in = static_cast<const std::uint16_t*>(src);
  for (std::size_t i = 0; i < n; ++i) dst[i] = bfloat16_to_float(in[i]);  // exact: the upper half of a float
}

class MixedKvCache {
 public:
  /// Rotations: identity, per layer or per KV head (checked against the config).
  explicit MixedKvCache(const MixedCacheConfig& config, Rotation key_rotation = {}, Rotation value_rotation = {});

  /// One decode token: k and v are [Hkv, d] float32, unrotated. Demotes when the window reaches W+8.
  void append(const float* k, const float* v);
  /// `tokens` tokens at once: k and v are [tokens, Hkv, d] float32, unrotated. The result is exactly the
  /// state `tokens` appends would leave (works on a non-empty cache too: chunked prefill).
  void prefill(const float* k, const float* v, int tokens);
  /// Allocates room for `tokens` tokens in total so appends up to there do not reallocate.
  void reserve(int tokens);
  /// Empties the cache (keeps allocations).
  void clear();

  const MixedCacheConfig& config() const { return config_; }
  const Rotation& key_rotation() const { return key_rotation_; }
  const Rotation& value_rotation() const { return value_rotation_; }

  int size() const { return sink_size_ + int2_size_ + recent_size(); }
  int sink_size() const { return sink_size_; }
  int recent_size() const { return recent_end_ - recent_begin_; }
  int int2_size() const { return int2_size_; }
  int full_precision_size() const { return sink_size_ + recent_size(); }
  /// INT2 pages in use (pages allocated ahead by reserve() are not counted).
  int int2_pages() const { return (int2_size_ + config_.block_tokens - 1) / config_.block_tokens; }
  /// Sequence position of the first INT2 row (= S0 once there is any) and of the first recent row.
  int int2_begin() const { return sink_size_; }
  int recent_begin_position() const { return sink_size_ + int2_size_; }
  CacheMemory memory() const;

  // ---- Low-level views, for attention kernels and tests -------------------------------------------------

  /// Contiguous full-precision rows ([count, d] elements of the storage type) of one KV head.
  struct FullPrecisionSpan {
    const void* rows = nullptr;
    int count = 0;
    int first_position = 0;  ///< sequence position of the first row
  };
  /// The sink rows and the recent rows (oldest first) of KV head `head`.
  FullPrecisionSpan sink_rows(KvKind kind, int head) const;
  FullPrecisionSpan recent_rows(KvKind kind, int head) const;
  FullPrecisionType full_precision_type() const { return config_.full_precision; }
  std::size_t full_precision_row_bytes() const;
  /// Full-precision row i (0 ≤ i < full_precision_size(): sink first, then recent) widened to float.
  void full_precision_row(KvKind kind, int head, int i, float* out) const;

  /// INT2 rows of page `page` for KV head `head`: int2_page_rows(page) consecutive rows holding positions
  /// int2_begin() + page·block_tokens + r.
  ConstInt2Rows int2_page(KvKind kind, int head, int page) const;
  int int2_page_rows(int page) const;
  /// INT2 row i (0 ≤ i < int2_size(), position int2_begin() + i) of KV head `head`.
  ConstInt2Rows int2_row(KvKind kind, int head, int i) const;
  const Int2Config& int2_config(KvKind kind) const {
    return kind == KvKind::kKey ? config_.key_int2 : config_.value_int2;
  }

 private:
  struct PageLayout {
    std::size_t codes = 0, scales = 0, zeros = 0;  // byte offsets of [Hkv][block][…] arrays
    std::size_t code_row = 0, scale_row = 0;       // bytes per row
  };
  struct Page {
    std::unique_ptr<std::uint8_t[]> key;
    std::unique_ptr<std::uint8_t[]> value;
  };

  // Rotates [count, Hkv, d] float rows into storage rows, head-major: out is [Hkv][count][row bytes].
  void to_storage(const float* rows, int count, const Rotation& rotation, std::uint8_t* out, int threads) const;
  void grow_sink(int rows);
  void make_room_recent(int count);
  void resize_recent(int capacity);
  // Quantises `count` storage rows per head and kind onto the INT2 history; the rows of head h start at
  // base[kind] + h·head_stride rows.
  void demote(const std::uint8_t* const base[2], std::int64_t head_stride, int count, int threads);
  void ensure_pages(int rows);
  Int2Rows page_rows(Page& page, KvKind kind, int head, int row) const;
  ConstInt2Rows page_rows(const Page& page, KvKind kind, int head, int row) const;
  const PageLayout& layout(KvKind kind) const { return kind == KvKind::kKey ? key_layout_ : value_layout_; }

  MixedCacheConfig config_;
  Rotation key_rotation_;
  Rotation value_rotation_;
  PageLayout key_layout_, value_layout_;
  std::size_t key_page_bytes_ = 0, value_page_bytes_ = 0;

  int sink_size_ = 0;
  int int2_size_ = 0;
  // Per kind, head-major blocks: sink_[kind] is [Hkv][sink_capacity_][row], recent_[kind] is
  // [Hkv][recent_capacity_][row] with live rows [recent_begin_, recent_end_) (compacted to the front when
  // the end is reached).
  std::vector<std::uint8_t> sink_[2];
  std::vector<std::uint8_t> recent_[2];
  int sink_capacity_ = 0;
  int recent_begin_ = 0, recent_end_ = 0, recent_capacity_ = 0;
  std::vector<Page> pages_;  // allocated pages (reserve() may allocate ahead of int2_pages())
  std::vector<std::uint8_t> scratch_[2];
};

}  // namespace oscar::runtime
