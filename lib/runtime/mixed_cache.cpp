#include "runtime/mixed_cache.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/dtype.h"
#include "core/parallel_for.h"

namespace oscar::runtime {

namespace {

int kind_index(KvKind kind) { return kind == KvKind::kKey ? 0 : 1; }

std::size_t scale_bytes(const Int2Config& c) { return c.scale_type == ScaleType::kFloat32 ? 4 : 2; }

// Bytes of one INT2 row: packed codes plus per-group scale and zero.
std::size_t int2_row_bytes(const Int2Config& c) {
  return std::size_t(c.packed_bytes()) + 2 * std::size_t(c.groups()) * scale_bytes(c);
}

void require(bool ok, const std::string& message) {
  if (!ok) throw std::invalid_argument("mixed KV cache: " + message);
}

}  // namespace

void store_full_precision(const float* src, std::size_t n, FullPrecisionType type, void* dst) {
  if (type == FullPrecisionType::kFloat32) {
    std::memcpy(dst, src, n * sizeof(float));
    return;
  }
  auto* out = static_cast<std::uint16_t*>(dst);
  for (std::size_t i = 0; i < n; ++i) out[i] = float_to_bfloat16(src[i]);
}

MixedCacheConfig MixedCacheConfig::make(int kv_heads, int head_dim) {
  MixedCacheConfig c;
  c.kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.key_int2.head_dim = c.key_int2.group_size = head_dim;
  c.value_int2.head_dim = c.value_int2.group_size = head_dim;
  return c;
}

MixedCacheConfig MixedCacheConfig::full_precision_only(int kv_heads, int head_dim) {
  MixedCacheConfig c = make(kv_heads, head_dim);
  c.sink_tokens = kUnbounded;
  return c;
}

void MixedCacheConfig::validate() const {
  require(kv_heads >= 1, "kv_heads must be positive, got " + std::to_string(kv_heads));
  require(head_dim >= 4 && head_dim % 4 == 0, "head_dim must be a positive multiple of 4, got " + std::to_string(head_dim));
  require(sink_tokens >= 0 && sink_tokens <= kUnbounded && sink_tokens % kDemotionStep == 0,
          "sink_tokens must be a multiple of 8 in [0, 2^30], got " + std::to_string(sink_tokens));
  require(recent_tokens >= 0 && recent_tokens <= kUnbounded && recent_tokens % kDemotionStep == 0,
          "recent_tokens must be a multiple of 8 in [0, 2^30], got " + std::to_string(recent_tokens));
  require(block_tokens > 0 && block_tokens <= (1 << 20) && block_tokens % kDemotionStep == 0,
          "block_tokens must be a positive multiple of 8, got " + std::to_string(block_tokens));
  require(key_int2.head_dim == head_dim && value_int2.head_dim == head_dim,
          "the INT2 configs' head_dim must equal head_dim " + std::to_string(head_dim));
  runtime::validate(key_int2);
  runtime::validate(value_int2);
}

MixedKvCache::MixedKvCache(const MixedCacheConfig& config, Rotation key_rotation, Rotation value_rotation)
    : config_(config), key_rotation_(std::move(key_rotation)), value_rotation_(std::move(value_rotation)) {
  config_.validate();
  if (config_.threads < 1) config_.threads = 1;
  key_rotation_.check_compatible(config_.kv_heads, config_.head_dim, "key rotation");
  value_rotation_.check_compatible(config_.kv_heads, config_.head_dim, "value rotation");
  const auto make_layout = [&](const Int2Config& c, PageLayout& l) {
    const std::size_t rows = std::size_t(config_.kv_heads) * std::size_t(config_.block_tokens);
    l.code_row = std::size_t(c.packed_bytes());
    l.scale_row = std::size_t(c.groups()) * scale_bytes(c);
    l.codes = 0;
    l.scales = rows * l.code_row;
    l.zeros = l.scales + rows * l.scale_row;
    return l.zeros + rows * l.scale_row;
  };
  key_page_bytes_ = make_layout(config_.key_int2, key_layout_);
  value_page_bytes_ = make_layout(config_.value_int2, value_layout_);
}

std::size_t MixedKvCache::full_precision_row_bytes() const {
  return std::size_t(config_.head_dim) * full_precision_bytes(config_.full_precision);
}

void MixedKvCache::to_storage(const float* rows, int count, const Rotation& rotation, std::uint8_t* out,
                              int threads) const {
  const int hkv = config_.kv_heads, d = config_.head_dim;
  const std::size_t rb = full_precision_row_bytes();
  const auto one_token = [&](int t) {
    std::vector<float> rotated(rotation.is_identity() ? 0 : std::size_t(d));
    for (int h = 0; h < hkv; ++h) {
      const float* x = rows + (std::size_t(t) * hkv + h) * d;
      if (!rotation.is_identity()) {
        rotation.apply(h, x, rotated.data());
        x = rotated.data();
      }
      store_full_precision(x, std::size_t(d), config_.full_precision, out + (std::size_t(h) * count + t) * rb);
    }
  };
  if (threads <= 1 || count < 64) {
    for (int t = 0; t < count; ++t) one_token(t);
  } else {
    parallel_for(count, threads, one_token);
  }
}

void MixedKvCache::grow_sink(int rows) {
  if (rows <= sink_capacity_) return;
  const int capacity = std::min(config_.sink_tokens, std::max({rows, 2 * sink_capacity_, 64}));
  const std::size_t rb = full_precision_row_bytes();
  for (int k = 0; k < 2; ++k) {
    std::vector<std::uint8_t> grown(std::size_t(config_.kv_heads) * std::size_t(capacity) * rb);
    for (int h = 0; h < config_.kv_heads; ++h) {
      if (sink_size_ > 0) {
        std::memcpy(grown.data() + std::size_t(h) * capacity * rb, sink_[k].data() + std::size_t(h) * sink_capacity_ * rb,
                    std::size_t(sink_size_) * rb);
      }
    }
    sink_[k].swap(grown);
  }
  sink_capacity_ = capacity;
}

void MixedKvCache::resize_recent(int capacity) {
  const int live = recent_size();
  const std::size_t rb = full_precision_row_bytes();
  for (int k = 0; k < 2; ++k) {
    std::vector<std::uint8_t> grown(std::size_t(config_.kv_heads) * std::size_t(capacity) * rb);
    for (int h = 0; h < config_.kv_heads; ++h) {
      if (live > 0) {
        std::memcpy(grown.data() + std::size_t(h) * capacity * rb,
                    recent_[k].data() + (std::size_t(h) * recent_capacity_ + recent_begin_) * rb, std::size_t(live) * rb);
      }
    }
    recent_[k].swap(grown);
  }
  recent_capacity_ = capacity;
  recent_begin_ = 0;
  recent_end_ = live;
}

void MixedKvCache::make_room_recent(int count) {
  if (recent_end_ + count <= recent_capacity_) return;
  const int live = recent_size();
  if (2 * (live + count) > recent_capacity_) {
    resize_recent(std::max(2 * (live + count), 64));
    return;
  }
  // Compact in place: at most W+8 rows moved once every ≥ capacity/2 appends.
  const std::size_t rb = full_precision_row_bytes();
  for (int k = 0; k < 2; ++k) {
    for (int h = 0; h < config_.kv_heads; ++h) {
      std::uint8_t* block = recent_[k].data() + std::size_t(h) * recent_capacity_ * rb;
      std::memmove(block, block + std::size_t(recent_begin_) * rb, std::size_t(live) * rb);
    }
  }
  recent_begin_ = 0;
  recent_end_ = live;
}

void MixedKvCache::ensure_pages(int rows) {
  const std::size_t needed = (std::size_t(rows) + config_.block_tokens - 1) / config_.block_tokens;
  while (pages_.size() < needed) {
    Page page;
    page.key.reset(new std::uint8_t[key_page_bytes_]);
    page.value.reset(new std::uint8_t[value_page_bytes_]);
    pages_.push_back(std::move(page));
  }
}

Int2Rows MixedKvCache::page_rows(Page& page, KvKind kind, int head, int row) const {
  const PageLayout& l = layout(kind);
  std::uint8_t* base = kind == KvKind::kKey ? page.key.get() : page.value.get();
  const std::size_t r = std::size_t(head) * config_.block_tokens + row;
  return Int2Rows{base + l.codes + r * l.code_row, base + l.scales + r * l.scale_row, base + l.zeros + r * l.scale_row};
}

ConstInt2Rows MixedKvCache::page_rows(const Page& page, KvKind kind, int head, int row) const {
  const PageLayout& l = layout(kind);
  const std::uint8_t* base = kind == KvKind::kKey ? page.key.get() : page.value.get();
  const std::size_t r = std::size_t(head) * config_.block_tokens + row;
  return ConstInt2Rows{base + l.codes + r * l.code_row, base + l.scales + r * l.scale_row, base + l.zeros + r * l.scale_row};
}

void MixedKvCache::demote(const std::uint8_t* const base[2], std::int64_t head_stride, int count, int threads) {
  if (count <= 0) return;
  ensure_pages(int2_size_ + count);
  const int block = config_.block_tokens, d = config_.head_dim;
  const std::size_t rb = full_precision_row_bytes();
  // Jobs: (kind, head, run of rows within one page), in a fixed order.
  struct Job {
    int kind, head, first, rows;  // first: index among the `count` rows
  };
  std::vector<Job> jobs;
  for (int k = 0; k < 2; ++k) {
    for (int h = 0; h < config_.kv_heads; ++h) {
      for (int i = 0; i < count;) {
        const int slot = (int2_size_ + i) % block;
        const int rows = std::min(count - i, block - slot);
        jobs.push_back({k, h, i, rows});
        i += rows;
      }
    }
  }
  const auto run = [&](int j) {
    const Job& job = jobs[std::size_t(j)];
    const KvKind kind = job.kind == 0 ? KvKind::kKey : KvKind::kValue;
    const int history = int2_size_ + job.first;
    std::vector<float> widened(std::size_t(job.rows) * d);
    widen_full_precision(base[job.kind] + (std::size_t(job.head) * head_stride + job.first) * rb,
                         std::size_t(job.rows) * d, config_.full_precision, widened.data());
    Page& page = pages_[std::size_t(history / block)];
    quantize_rows(widened.data(), job.rows, int2_config(kind), page_rows(page, kind, job.head, history % block), 1);
  };
  if (threads <= 1 || jobs.size() < 4) {
    for (int j = 0; j < int(jobs.size()); ++j) run(j);
  } else {
    parallel_for(int(jobs.size()), threads, run);
  }
  int2_size_ += count;
}

void MixedKvCache::prefill(const float* k, const float* v, int tokens) {
  if (tokens < 0) throw std::invalid_argument("mixed KV cache: negative token count");
  if (tokens == 0) return;
  if (std::int64_t(size()) + tokens > std::int64_t(1 << 30) * 2 - 1) {
    throw std::invalid_argument("mixed KV cache: more than 2^31 − 1 tokens");
  }
  const int hkv = config_.kv_heads;
  const int threads = tokens > 1 ? config_.threads : 1;
  const std::size_t rb = full_precision_row_bytes();
  for (int kind = 0; kind < 2; ++kind) {
    scratch_[kind].resize(std::size_t(hkv) * tokens * rb);
    to_storage(kind == 0 ? k : v, tokens, kind == 0 ? key_rotation_ : value_rotation_, scratch_[kind].data(), threads);
  }
  int t = 0;
  // 1. The sink takes the first S0 tokens of the sequence.
  if (sink_size_ < config_.sink_tokens) {
    const int to_sink = int(std::min<std::int64_t>(tokens, std::int64_t(config_.sink_tokens) - sink_size_));
    grow_sink(sink_size_ + to_sink);
    for (int kind = 0; kind < 2; ++kind) {
      for (int h = 0; h < hkv; ++h) {
        std::memcpy(sink_[kind].data() + (std::size_t(h) * sink_capacity_ + sink_size_) * rb,
                    scratch_[kind].data() + std::size_t(h) * tokens * rb, std::size_t(to_sink) * rb);
      }
    }
    sink_size_ += to_sink;
    t = to_sink;
  }
  const int fresh = tokens - t;
  if (fresh == 0) return;
  // 2. Appending one at a time demotes 8 whenever the window reaches W+8: of [recent | fresh], the oldest
  //    8·⌊(r − W)/8⌋ (r = total, once r ≥ W+8) end up INT2, in order, and the rest stay in the window.
  const std::int64_t total = std::int64_t(recent_size()) + fresh;
  const std::int64_t w = config_.recent_tokens;
  const int demoted = total >= w + kDemotionStep ? int((total - w) / kDemotionStep * kDemotionStep) : 0;
  const int from_recent = std::min(demoted, recent_size());
  if (from_recent > 0) {
    const std::uint8_t* base[2] = {recent_[0].data() + std::size_t(recent_begin_) * rb,
                                   recent_[1].data() + std::size_t(recent_begin_) * rb};
    demote(base, recent_capacity_, from_recent, threads);
    recent_begin_ += from_recent;
  }
  const int from_fresh = demoted - from_recent;
  if (from_fresh > 0) {
    const std::uint8_t* base[2] = {scratch_[0].data() + std::size_t(t) * rb, scratch_[1].data() + std::size_t(t) * rb};
    demote(base, tokens, from_fresh, threads);
    t += from_fresh;
  }
  const int kept = tokens - t;
  if (kept > 0) {
    make_room_recent(kept);
    for (int kind = 0; kind < 2; ++kind) {
      for (int h = 0; h < hkv; ++h) {
        std::memcpy(recent_[kind].data() + (std::size_t(h) * recent_capacity_ + recent_end_) * rb,
                    scratch_[kind].data() + (std::size_t(h) * tokens + t) * rb, std::size_t(kept) * rb);
      }
    }
    recent_end_ += kept;
  }
}

void MixedKvCache::append(const float* k, const float* v) { prefill(k, v, 1); }

void MixedKvCache::reserve(int tokens) {
  if (tokens <= 0) return;
  grow_sink(std::min(tokens, config_.sink_tokens));
  const std::int64_t after_sink = std::int64_t(tokens) - config_.sink_tokens;
  if (after_sink > 0) {
    const int window = int(std::min<std::int64_t>(after_sink, std::int64_t(config_.recent_tokens) + kDemotionStep));
    if (recent_capacity_ < 2 * window) resize_recent(2 * window);
    const std::int64_t history = after_sink - config_.recent_tokens;
    if (history > 0) ensure_pages(int(history));
  }
}

void MixedKvCache::clear() {
  sink_size_ = 0;
  int2_size_ = 0;
  recent_begin_ = recent_end_ = 0;
}

CacheMemory MixedKvCache::memory() const {
  CacheMemory m;
  const std::size_t rb = full_precision_row_bytes();
  m.full_precision_bytes = std::int64_t(full_precision_size()) * config_.kv_heads * std::int64_t(rb) * 2;
  m.int2_bytes = std::int64_t(int2_size_) * config_.kv_heads *
                 std::int64_t(int2_row_bytes(config_.key_int2) + int2_row_bytes(config_.value_int2));
  m.allocated_bytes = std::int64_t(sink_[0].size() + sink_[1].size() + recent_[0].size() + recent_[1].size()) +
                      std::int64_t(pages_.size()) * std::int64_t(key_page_bytes_ + value_page_bytes_);
  return m;
}

MixedKvCache::FullPrecisionSpan MixedKvCache::sink_rows(KvKind kind, int head) const {
  const std::size_t rb = full_precision_row_bytes();
  const auto& block = sink_[kind_index(kind)];
  if (sink_size_ == 0) return {nullptr, 0, 0};
  return {block.data() + std::size_t(head) * sink_capacity_ * rb, sink_size_, 0};
}

MixedKvCache::FullPrecisionSpan MixedKvCache::recent_rows(KvKind kind, int head) const {
  const std::size_t rb = full_precision_row_bytes();
  const auto& block = recent_[kind_index(kind)];
  if (recent_size() == 0) return {nullptr, 0, recent_begin_position()};
  return {block.data() + (std::size_t(head) * recent_capacity_ + recent_begin_) * rb, recent_size(),
          recent_begin_position()};
}

void MixedKvCache::full_precision_row(KvKind kind, int head, int i, float* out) const {
  if (i < 0 || i >= full_precision_size() || head < 0 || head >= config_.kv_heads) {
    throw std::out_of_range("mixed KV cache: full-precision row out of range");
  }
  const FullPrecisionSpan span = i < sink_size_ ? sink_rows(kind, head) : recent_rows(kind, head);
  const int row = i < sink_size_ ? i : i - sink_size_;
  widen_full_precision(static_cast<const std::uint8_t*>(span.rows) + std::size_t(row) * full_precision_row_bytes(),
                       std::size_t(config_.head_dim), config_.full_precision, out);
}

int MixedKvCache::int2_page_rows(int page) const {
  if (page < 0 || page >= int2_pages()) throw std::out_of_range("mixed KV cache: INT2 page out of range");
  return std::min(config_.block_tokens, int2_size_ - page * config_.block_tokens);
}

ConstInt2Rows MixedKvCache::int2_page(KvKind kind, int head, int page) const {
  if (page < 0 || page >= int2_pages() || head < 0 || head >= config_.kv_heads) {
    throw std::out_of_range("mixed KV cache: INT2 page out of range");
  }
  return page_rows(pages_[std::size_t(page)], kind, head, 0);
}

ConstInt2Rows MixedKvCache::int2_row(KvKind kind, int head, int i) const {
  if (i < 0 || i >= int2_size_ || head < 0 || head >= config_.kv_heads) {
    throw std::out_of_range("mixed KV cache: INT2 row out of range");
  }
  return page_rows(pages_[std::size_t(i / config_.block_tokens)], kind, head, i % config_.block_tokens);
}

}  // namespace oscar::runtime
