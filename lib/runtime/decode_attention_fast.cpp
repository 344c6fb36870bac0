// The fast decode attention path (decode_attention.h): float32, rows split into fixed chunks processed on
// several threads, each chunk a two-loop softmax (scores and their max, then exponentials and the value
// sum), the chunks merged by log-sum-exp in a fixed order.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/parallel_for.h"
#include "runtime/decode_attention.h"

namespace oscar::runtime {

namespace attention_detail {

float dot(const float* a, const float* b, int n) {
  float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += a[i + k] * b[i + k];
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return (((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))) + tail;
}

void axpy(float alpha, const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void dequantize_row(ConstInt2Rows row, const Int2Config& config, float* out) {
  const int d = config.head_dim, quarter = d / 4, g_size = config.group_size;
  const std::uint8_t* packed = row.codes;
  for (int i = 0; i < quarter; ++i) {
    const unsigned byte = packed[i];
    out[i] = float(byte & 3u);
    out[i + quarter] = float((byte >> 2) & 3u);
    out[i + 2 * quarter] = float((byte >> 4) & 3u);
    out[i + 3 * quarter] = float(byte >> 6);
  }
  for (int g = 0; g < config.groups(); ++g) {
    const float scale = load_scale(row.scales, g, config.scale_type);
    const float zero = load_scale(row.zeros, g, config.scale_type);
    float* x = out + std::size_t(g) * g_size;
    for (int e = 0; e < g_size; ++e) x[e] = (x[e] - zero) * scale;  // = dequantize_code
  }
}

}  // namespace attention_detail

namespace {

using attention_detail::axpy;
using attention_detail::dequantize_row;
using attention_detail::dot;

/// Row r of a run of consecutive INT2 rows.
ConstInt2Rows offset_row(ConstInt2Rows rows, const Int2Config& config, int r) {
  const std::size_t scale_bytes = config.scale_type == ScaleType::kFloat32 ? 4 : 2;
  const std::size_t per_row = std::size_t(config.groups()) * scale_bytes;
  return ConstInt2Rows{rows.codes + std::size_t(r) * config.packed_bytes(),
                       static_cast<const std::uint8_t*>(rows.scales) + r * per_row,
                       static_cast<const std::uint8_t*>(rows.zeros) + r * per_row};
}

/// One work item: a chunk of one KV head's full-precision rows, or a run of its INT2 pages.
struct Item {
  int head = 0;
  bool int2 = false;
  const std::uint8_t* keys = nullptr;    // full precision: storage rows
  const std::uint8_t* values = nullptr;
  int count = 0;                         // rows
  int page_begin = 0, page_end = 0;      // INT2
};

}  // namespace

void decode_attention(const MixedKvCache& cache, const float* q, int q_heads, float* out,
                      const AttentionOptions& options) {
  const MixedCacheConfig& config = cache.config();
  const int d = config.head_dim, hkv = config.kv_heads;
  if (cache.size() == 0) throw std::invalid_argument("decode attention: empty cache");
  if (q_heads <= 0 || q_heads % hkv != 0) {
    throw std::invalid_argument("decode attention: " + std::to_string(q_heads) + " query heads for " +
                                std::to_string(hkv) + " KV heads");
  }
  const int group = q_heads / hkv;
  const float scale = options.scale > 0.0f ? options.scale : float(1.0 / std::sqrt(double(d)));
  const int split = std::max(options.split_tokens, 1);
  const Rotation& rk = cache.key_rotation();
  const Rotation& rv = cache.value_rotation();

  // Queries rotated by R_K of their KV head, then scaled.
  std::vector<float> qs(std::size_t(q_heads) * d);
  for (int h = 0; h < q_heads; ++h) {
    float* dst = qs.data() + std::size_t(h) * d;
    if (rk.is_identity()) {
      std::memcpy(dst, q + std::size_t(h) * d, std::size_t(d) * sizeof(float));
    } else {
      rk.apply(h / group, q + std::size_t(h) * d, dst);
    }
    for (int e = 0; e < d; ++e) dst[e] *= scale;
  }

  // Work items, grouped by KV head in a fixed order.
  const std::size_t rb = cache.full_precision_row_bytes();
  const int block = config.block_tokens;
  const int pages_per_item = std::max(1, split / block);
  std::vector<Item> items;
  std::vector<int> head_first(std::size_t(hkv) + 1);
  for (int g = 0; g < hkv; ++g) {
    head_first[std::size_t(g)] = int(items.size());
    for (int segment = 0; segment < 2; ++segment) {
      const auto keys = segment == 0 ? cache.sink_rows(KvKind::kKey, g) : cache.recent_rows(KvKind::kKey, g);
      const auto values = segment == 0 ? cache.sink_rows(KvKind::kValue, g) : cache.recent_rows(KvKind::kValue, g);
      for (int first = 0; first < keys.count; first += split) {
        Item item;
        item.head = g;
        item.keys = static_cast<const std::uint8_t*>(keys.rows) + std::size_t(first) * rb;
        item.values = static_cast<const std::uint8_t*>(values.rows) + std::size_t(first) * rb;
        item.count = std::min(split, keys.count - first);
        items.push_back(item);
      }
    }
    for (int page = 0; page < cache.int2_pages(); page += pages_per_item) {
      Item item;
      item.head = g;
      item.int2 = true;
      item.page_begin = page;
      item.page_end = std::min(cache.int2_pages(), page + pages_per_item);
      for (int p = item.page_begin; p < item.page_end; ++p) item.count += cache.int2_page_rows(p);
      items.push_back(item);
    }
  }
  head_first[std::size_t(hkv)] = int(items.size());

  // Each item: per query head of its group, [m, l, acc[d]].
  const std::size_t state = std::size_t(d) + 2;
  std::vector<float> partial(items.size() * group * state);
  const FullPrecisionType storage = cache.full_precision_type();
  const Int2Config& kc = cache.int2_config(KvKind::kKey);
  const Int2Config& vc = cache.int2_config(KvKind::kValue);

  const auto run = [&](int index) {
    const Item& item = items[std::size_t(index)];
    const int n = item.count, g = item.head;
    const float* qg = qs.data() + std::size_t(g) * group * d;
    std::vector<float> scores(std::size_t(group) * n);
    std::vector<float> row(static_cast<std::size_t>(d));
    // Calls f(j, row) for every row j of the item with the key (kind 0) or value (kind 1) row as float.
    const auto for_rows = [&](KvKind kind, const auto& f) {
      if (!item.int2) {
        const std::uint8_t* base = kind == KvKind::kKey ? item.keys : item.values;
        for (int j = 0; j < n; ++j) {
          widen_full_precision(base + std::size_t(j) * rb, std::size_t(d), storage, row.data());
          f(j, row.data());
        }
        return;
      }
      const Int2Config& c = kind == KvKind::kKey ? kc : vc;
      int j = 0;
      for (int p = item.page_begin; p < item.page_end; ++p) {
        const ConstInt2Rows page = cache.int2_page(kind, g, p);
        const int rows = cache.int2_page_rows(p);
        for (int r = 0; r < rows; ++r, ++j) {
          dequantize_row(offset_row(page, c, r), c, row.data());
          f(j, row.data());
        }
      }
    };
    for_rows(KvKind::kKey, [&](int j, const float* key) {
      for (int a = 0; a < group; ++a) scores[std::size_t(a) * n + j] = dot(qg + std::size_t(a) * d, key, d);
    });
    float* result = partial.data() + std::size_t(index) * group * state;
    for (int a = 0; a < group; ++a) {
      float* s = scores.data() + std::size_t(a) * n;
      float m = -std::numeric_limits<float>::infinity();
      for (int j = 0; j < n; ++j) m = std::max(m, s[j]);
      float l = 0.0f;
      for (int j = 0; j < n; ++j) {
        s[j] = std::exp(s[j] - m);
        l += s[j];
      }
      float* st = result + std::size_t(a) * state;
      st[0] = m;
      st[1] = l;
      std::fill(st + 2, st + state, 0.0f);
    }
    for_rows(KvKind::kValue, [&](int j, const float* value) {
      for (int a = 0; a < group; ++a) axpy(scores[std::size_t(a) * n + j], value, result + std::size_t(a) * state + 2, d);
    });
  };
  parallel_for(int(items.size()), std::max(options.threads, 1), run);

  // Merge every query head's states in item order, normalise, un-rotate by R_Vᵀ.
  std::vector<float> o(static_cast<std::size_t>(d));
  for (int h = 0; h < q_heads; ++h) {
    const int g = h / group, a = h % group;
    float m = -std::numeric_limits<float>::infinity(), l = 0.0f;
    std::fill(o.begin(), o.end(), 0.0f);
    for (int i = head_first[std::size_t(g)]; i < head_first[std::size_t(g) + 1]; ++i) {
      const float* st = partial.data() + (std::size_t(i) * group + a) * state;
      if (st[1] == 0.0f) continue;
      const float merged = std::max(m, st[0]);
      const float keep = l == 0.0f ? 0.0f : std::exp(m - merged);
      const float add = std::exp(st[0] - merged);
      l = l * keep + st[1] * add;
      for (int e = 0; e < d; ++e) o[std::size_t(e)] = o[std::size_t(e)] * keep + st[2 + e] * add;
      m = merged;
    }
    const float inverse = 1.0f / l;
    for (int e = 0; e < d; ++e) o[std::size_t(e)] *= inverse;
    float* oh = out + std::size_t(h) * d;
    if (rv.is_identity()) {
      std::memcpy(oh, o.data(), std::size_t(d) * sizeof(float));
    } else {
      rv.apply_transpose(g, o.data(), oh);
    }
  }
}

}  // namespace oscar::runtime
