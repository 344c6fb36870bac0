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

#include "core/dtype.h"
#include "core/parallel_for.h"
#include "runtime/decode_attention.h"

namespace oscar::runtime {

namespace attention_detail {

void exp_nonpositive_scalar(float* x, int n) {
  // Cephes expf: e^x = 2^k · e^r, k = round(x·log2 e), r = x − k·ln 2 (in two parts), e^r by a degree-6
  // polynomial; k rounded with the 1.5·2^23 trick. Below kExpFlushBelow the result is 0 (subnormal
  // products had halved decode speed on random attention).
  for (int i = 0; i < n; ++i) {
    const float input = x[i];
    const float v = input < kExpFlushBelow ? kExpFlushBelow : input;
    const float k = (v * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = v - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const std::uint32_t bits = std::uint32_t(std::int32_t(k) + 127) << 23;
    float two_k;
    std::memcpy(&two_k, &bits, sizeof two_k);
    x[i] = input < kExpFlushBelow ? 0.0f : p * two_k;
  }
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

/// Scale or zero number `index` (as load_scale, inlined here).
inline float param_at(const void* values, int index, ScaleType type) {
  if (type == ScaleType::kFloat32) {
    float value;
    std::memcpy(&value, static_cast<const std::uint8_t*>(values) + std::size_t(index) * 4, sizeof value);
    return value;
  }
  std::uint16_t bits;
  std::memcpy(&bits, static_cast<const std::uint8_t*>(values) + std::size_t(index) * 2, sizeof bits);
  return float16_to_float(bits);
}

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

/// Nibble lookup tables for INT2 rows whose groups cover whole halves of the row (G = d or G = d/2): byte i
/// of a row holds codes of elements i, i+q (low nibble) and i+2q, i+3q (high nibble), q = d/4, so with
/// tables per byte position and nibble half, a score is 2·q table lookups and the value sum 2·q table
/// updates per row, each for the A query heads of the KV head at once.
/// Layout: table[((i·2 + half)·16 + nibble)·A + a].

/// Scale and zero of both row halves (the same for G = d).
struct HalfParams {
  float s0, z0, s1, z1;
};
HalfParams half_params(ConstInt2Rows row, const Int2Config& c) {
  HalfParams p;
  p.s0 = param_at(row.scales, 0, c.scale_type);
  p.z0 = param_at(row.zeros, 0, c.scale_type);
  p.s1 = c.groups() == 2 ? param_at(row.scales, 1, c.scale_type) : p.s0;
  p.z1 = c.groups() == 2 ? param_at(row.zeros, 1, c.scale_type) : p.z0;
  return p;
}

// Lanes<8> vectors are 32 bytes: GCC notes that passing them by value changed ABI in GCC 4.6. They never
// cross a non-inline call here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

/// Asks the hardware to bring `bytes` from `base` into the cache ahead of use.
inline void prefetch_bytes(const void* base, std::size_t bytes) {
  const auto* bytes_at = static_cast<const std::uint8_t*>(base);
  for (std::size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(bytes_at + offset);
}

/// Asks for an INT2 page's scales and zeros (and codes, unless `codes` is false) of KV head `head` ahead of
/// use. A page holds a head's rows in one block (2 KiB of codes at 64 tokens and d = 128), too short for the
/// hardware prefetcher to lock on before the next page starts elsewhere: without this every page's first rows
/// wait on memory (perf; +12 % INT2 decode at 128K tokens).
inline void prefetch_int2_page(const MixedKvCache& cache, KvKind kind, int head, int page, bool codes = true) {
  const ConstInt2Rows rows = cache.int2_page(kind, head, page);
  const Int2Config& config = cache.int2_config(kind);
  const std::size_t count = std::size_t(cache.int2_page_rows(page));
  if (codes) prefetch_bytes(rows.codes, count * std::size_t(config.packed_bytes()));
  prefetch_bytes(rows.scales, count * std::size_t(config.groups() * config.scale_bytes()));
  prefetch_bytes(rows.zeros, count * std::size_t(config.groups() * config.scale_bytes()));
}

/// A values of A query heads as one vector (GCC/Clang vector extension: SSE/NEON registers, or split by the
/// compiler where wider), loaded and stored with memcpy (no alignment assumed).
template <int A>
struct Lanes {
  typedef float Vec __attribute__((vector_size(sizeof(float) * A)));
  static Vec load(const float* p) {
    Vec v;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  static void store(float* p, Vec v) { std::memcpy(p, &v, sizeof v); }
};

/// Calls visit(row, j) for the INT2 rows of `kind` in pages page_begin … page_end − 1 of a KV head, j counting
/// them from 0, and asks for each next page while the current one is visited (prefetch_int2_page).
template <class Visit>
void for_each_int2_row(const MixedKvCache& cache, KvKind kind, int head, int page_begin, int page_end,
                       const Visit& visit) {
  const Int2Config& c = cache.int2_config(kind);
  int j = 0;
  for (int p = page_begin; p < page_end; ++p) {
    if (p + 1 < page_end) prefetch_int2_page(cache, kind, head, p + 1);
    const ConstInt2Rows page = cache.int2_page(kind, head, p);
    const int rows = cache.int2_page_rows(p);
    for (int r = 0; r < rows; ++r, ++j) visit(offset_row(page, c, r), j);
  }
}

/// scores[a·n + j] = q_a·k̂_j for the item's INT2 rows (q already scaled): with T_lo/T_hi the sums of q over
/// the codes of each half and Q_half = Σ q over the half, q·k̂ = s0·(T_lo − z0·Q_lo) + s1·(T_hi − z1·Q_hi).
template <int A>
void nibble_scores(const MixedKvCache& cache, int head, int page_begin, int page_end, const float* q, float* scores,
                int n) {
  using L = Lanes<A>;
  using Vec = typename L::Vec;
  const Int2Config& c = cache.int2_config(KvKind::kKey);
  const int d = c.head_dim, quarter = d / 4;
  std::vector<float> table(std::size_t(quarter) * 32 * A);
  float q_half[2][A];
  for (int a = 0; a < A; ++a) {
    const float* qa = q + std::size_t(a) * d;
    for (int i = 0; i < quarter; ++i) {
      for (int half = 0; half < 2; ++half) {
        const float first = qa[i + 2 * half * quarter], second = qa[i + (2 * half + 1) * quarter];
        for (int nibble = 0; nibble < 16; ++nibble) {
          table[((std::size_t(i) * 2 + half) * 16 + nibble) * A + a] = first * float(nibble & 3) + second * float(nibble >> 2);
        }
      }
    }
    for (int half = 0; half < 2; ++half) {
      float sum = 0.0f;
      for (int e = half * 2 * quarter; e < (half + 1) * 2 * quarter; ++e) sum += qa[e];
      q_half[half][a] = sum;
    }
  }
  const float* tab = table.data();
  for_each_int2_row(cache, KvKind::kKey, head, page_begin, page_end, [&](const ConstInt2Rows& row, int j) {
    const std::uint8_t* codes = row.codes;
    // Two interleaved partial sums per half (even and odd i), combined in a fixed order.
    Vec lo0 = {}, lo1 = {}, hi0 = {}, hi1 = {};
    int i = 0;
    for (; i + 2 <= quarter; i += 2) {
      const unsigned b0 = codes[i], b1 = codes[i + 1];
      lo0 += L::load(tab + ((std::size_t(i) * 2) * 16 + (b0 & 15u)) * A);
      hi0 += L::load(tab + ((std::size_t(i) * 2 + 1) * 16 + (b0 >> 4)) * A);
      lo1 += L::load(tab + ((std::size_t(i + 1) * 2) * 16 + (b1 & 15u)) * A);
      hi1 += L::load(tab + ((std::size_t(i + 1) * 2 + 1) * 16 + (b1 >> 4)) * A);
    }
    if (i < quarter) {
      const unsigned b0 = codes[i];
      lo0 += L::load(tab + ((std::size_t(i) * 2) * 16 + (b0 & 15u)) * A);
      hi0 += L::load(tab + ((std::size_t(i) * 2 + 1) * 16 + (b0 >> 4)) * A);
    }
    const Vec lo = lo0 + lo1, hi = hi0 + hi1;
    const HalfParams hp = half_params(row, c);
    for (int a = 0; a < A; ++a) {
      scores[std::size_t(a) * n + j] = hp.s0 * (lo[a] - hp.z0 * q_half[0][a]) + hp.s1 * (hi[a] - hp.z1 * q_half[1][a]);
    }
  });
}

/// acc[a·stride + e] = Σ_j p[a·n + j]·v̂_j[e]: the weights w = p·s of each row are added to the table entry of
/// each of its nibbles, then every entry is expanded once: Σ_j w_j·code_j[e] − Σ_j w_j·z_j.
template <int A>
void nibble_values(const MixedKvCache& cache, int head, int page_begin, int page_end, const float* p_all, int n,
                float* acc, std::size_t stride) {
  using L = Lanes<A>;
  using Vec = typename L::Vec;
  const Int2Config& c = cache.int2_config(KvKind::kValue);
  const int d = c.head_dim, quarter = d / 4;
  std::vector<float> table(std::size_t(quarter) * 32 * A, 0.0f);
  float* tab = table.data();
  Vec zero_sum0 = {}, zero_sum1 = {};
  for_each_int2_row(cache, KvKind::kValue, head, page_begin, page_end, [&](const ConstInt2Rows& row, int j) {
    const std::uint8_t* codes = row.codes;
    const HalfParams hp = half_params(row, c);
    Vec weight;
    for (int a = 0; a < A; ++a) weight[a] = p_all[std::size_t(a) * n + j];
    const Vec w0 = weight * hp.s0, w1 = weight * hp.s1;
    zero_sum0 += w0 * hp.z0;
    zero_sum1 += w1 * hp.z1;
    for (int i = 0; i < quarter; ++i) {
      const unsigned byte = codes[i];
      float* tl = tab + ((std::size_t(i) * 2) * 16 + (byte & 15u)) * A;
      float* th = tab + ((std::size_t(i) * 2 + 1) * 16 + (byte >> 4)) * A;
      L::store(tl, L::load(tl) + w0);
      L::store(th, L::load(th) + w1);
    }
  });
  for (int a = 0; a < A; ++a) {
    float* out = acc + std::size_t(a) * stride;
    const float zero_sum[2] = {zero_sum0[a], zero_sum1[a]};
    for (int i = 0; i < quarter; ++i) {
      for (int half = 0; half < 2; ++half) {
        const float* t = tab + (std::size_t(i) * 2 + half) * 16 * A + a;
        float first = 0.0f, second = 0.0f;
        for (int nibble = 0; nibble < 16; ++nibble) {
          first += t[nibble * A] * float(nibble & 3);
          second += t[nibble * A] * float(nibble >> 2);
        }
        out[i + 2 * half * quarter] = first - zero_sum[half];
        out[i + (2 * half + 1) * quarter] = second - zero_sum[half];
      }
    }
  }
}

/// G = d (one group per row, the serving layout): tables per byte position and whole byte value, 256 entries,
/// so a row costs d/4 lookups for its score and d/4 table updates for the value sum.
/// Layout: table[(i·256 + byte)·A + a].
template <int A>
void byte_scores(const MixedKvCache& cache, int head, int page_begin, int page_end, const float* q, float* scores,
                 int n) {
  using L = Lanes<A>;
  using Vec = typename L::Vec;
  const Int2Config& c = cache.int2_config(KvKind::kKey);
  const int d = c.head_dim, quarter = d / 4;
  std::vector<float> table(std::size_t(quarter) * 256 * A);
  float q_sum[A];
  for (int a = 0; a < A; ++a) {
    float sum = 0.0f;
    for (int e = 0; e < d; ++e) sum += q[std::size_t(a) * d + e];
    q_sum[a] = sum;
  }
  for (int i = 0; i < quarter; ++i) {
    // field[k][c] = c·q[i + k·quarter] for every query head: a byte's entry is the sum of its four fields.
    Vec field[4][4];
    for (int k = 0; k < 4; ++k) {
      Vec qk;
      for (int a = 0; a < A; ++a) qk[a] = q[std::size_t(a) * d + i + k * quarter];
      for (int code = 0; code < 4; ++code) field[k][code] = qk * float(code);
    }
    float* t = table.data() + std::size_t(i) * 256 * A;
    for (int byte = 0; byte < 256; ++byte) {
      L::store(t + std::size_t(byte) * A, (field[0][byte & 3] + field[1][(byte >> 2) & 3]) +
                                              (field[2][(byte >> 4) & 3] + field[3][byte >> 6]));
    }
  }
  const float* tab = table.data();
  for_each_int2_row(cache, KvKind::kKey, head, page_begin, page_end, [&](const ConstInt2Rows& row, int j) {
    const std::uint8_t* codes = row.codes;
    // Four interleaved partial sums, combined in a fixed order.
    Vec t0 = {}, t1 = {}, t2 = {}, t3 = {};
    int i = 0;
    for (; i + 4 <= quarter; i += 4) {
      t0 += L::load(tab + (std::size_t(i) * 256 + codes[i]) * A);
      t1 += L::load(tab + (std::size_t(i + 1) * 256 + codes[i + 1]) * A);
      t2 += L::load(tab + (std::size_t(i + 2) * 256 + codes[i + 2]) * A);
      t3 += L::load(tab + (std::size_t(i + 3) * 256 + codes[i + 3]) * A);
    }
    for (; i < quarter; ++i) t0 += L::load(tab + (std::size_t(i) * 256 + codes[i]) * A);
    const Vec total = (t0 + t1) + (t2 + t3);
    const float scale = param_at(row.scales, 0, c.scale_type), zero = param_at(row.zeros, 0, c.scale_type);
    for (int a = 0; a < A; ++a) scores[std::size_t(a) * n + j] = scale * (total[a] - zero * q_sum[a]);
  });
}

template <int A>
void byte_values(const MixedKvCache& cache, int head, int page_begin, int page_end, const float* p_all, int n,
                 float* acc, std::size_t stride) {
  using L = Lanes<A>;
  using Vec = typename L::Vec;
  const Int2Config& c = cache.int2_config(KvKind::kValue);
  const int d = c.head_dim, quarter = d / 4;
  std::vector<float> table(std::size_t(quarter) * 256 * A, 0.0f);
  float* tab = table.data();
  Vec zero_sum = {};
  for_each_int2_row(cache, KvKind::kValue, head, page_begin, page_end, [&](const ConstInt2Rows& row, int j) {
    const std::uint8_t* codes = row.codes;
    const float scale = param_at(row.scales, 0, c.scale_type), zero = param_at(row.zeros, 0, c.scale_type);
    Vec weight;
    for (int a = 0; a < A; ++a) weight[a] = p_all[std::size_t(a) * n + j];
    const Vec w = weight * scale;
    zero_sum += w * zero;
    for (int i = 0; i < quarter; ++i) {
      float* t = tab + (std::size_t(i) * 256 + codes[i]) * A;
      L::store(t, L::load(t) + w);
    }
  });
  // Expansion: element i + k·quarter gets Σ_byte W[i][byte]·field_k(byte). Summing the table over the
  // bytes with a given field value first: Σ_c c·(Σ_{byte: field_k = c} W).
  for (int i = 0; i < quarter; ++i) {
    const float* t = tab + std::size_t(i) * 256 * A;
    Vec by_code[4][4] = {};  // [field k][code c]
    for (int byte = 0; byte < 256; ++byte) {
      const Vec w = L::load(t + std::size_t(byte) * A);
      by_code[0][byte & 3] += w;
      by_code[1][(byte >> 2) & 3] += w;
      by_code[2][(byte >> 4) & 3] += w;
      by_code[3][byte >> 6] += w;
    }
    for (int k = 0; k < 4; ++k) {
      const Vec value = (by_code[k][1] + by_code[k][2] * 2.0f + by_code[k][3] * 3.0f) - zero_sum;
      for (int a = 0; a < A; ++a) acc[std::size_t(a) * stride + i + k * quarter] = value[a];
    }
  }
}


/// One INT2 work item with G = d (one group per row), the whole softmax state at once, with the byte tables
/// of byte_scores / byte_values cut into slices of W byte positions (16 KiB for A ≤ 4), so that each slice
/// stays in L1: a pass over the item's rows per slice. Scores, weights: [row][A] (one vector per row).
struct PageCodes {
  const std::uint8_t* codes;
  int rows;
};

template <int A, int W>
void score_pass(const float* q, int d, int i0, const std::vector<PageCodes>& pages, int packed, float* table,
                float* sc, bool first) {
  using L = Lanes<A>;
  using Vec = typename L::Vec;
  const int quarter = d / 4;
  for (int w = 0; w < W; ++w) {
    const int i = i0 + w;
    Vec field[4][4];
    for (int k = 0; k < 4; ++k) {
      Vec qk;
      for (int a = 0; a < A; ++a) qk[a] = q[std::size_t(a) * d + i + k * quarter];
      for (int code = 0; code < 4; ++code) field[k][code] = qk * float(code);
    }
    float* t = table + std::size_t(w) * 256 * A;
    for (int c3 = 0; c3 < 4; ++c3) {
      for (int c2 = 0; c2 < 4; ++c2) {
        const Vec high = field[2][c2] + field[3][c3];
        for (int c1 = 0; c1 < 4; ++c1) {
          for (int c0 = 0; c0 < 4; ++c0) {
            L::store(t + std::size_t(c3 * 64 + c2 * 16 + c1 * 4 + c0) * A, (field[0][c0] + field[1][c1]) + high);
          }
        }
      }
    }
  }
  float* out = sc;
  for (std::size_t p = 0; p < pages.size(); ++p) {
    const PageCodes& page = pages[p];
    if (first && p + 1 < pages.size()) prefetch_bytes(pages[p + 1].codes, std::size_t(pages[p + 1].rows * packed));
    const std::uint8_t* codes = page.codes + i0;
    for (int r = 0; r < page.rows; ++r, codes += packed, out += A) {
      Vec total;
      if (W == 4) {
        total = (L::load(table + std::size_t(codes[0]) * A) + L::load(table + (256 + std::size_t(codes[1])) * A)) +
                (L::load(table + (512 + std::size_t(codes[2])) * A) + L::load(table + (768 + std::size_t(codes[3])) * A));
      } else if (W == 2) {
        total = L::load(table + std::size_t(codes[0]) * A) + L::load(table + (256 + std::size_t(codes[1])) * A);
      } else {
        total = L::load(table + std::size_t(codes[0]) * A);
      }
      L::store(out, first ? total : L::load(out) + total);
    }
  }
}

template <int A, int W>
void value_pass(int d, int i0, const std::vector<PageCodes>& pages, int packed, float* table, const float* wt,
                typename Lanes<A>::Vec zero_sum, float* acc, std::size_t stride) {
  using L = Lanes<A>;
  using Vec = typename L::Vec;
  const int quarter = d / 4;
  std::memset(table, 0, sizeof(float) * std::size_t(W) * 256 * A);
  const float* weight = wt;
  for (std::size_t p = 0; p < pages.size(); ++p) {
    const PageCodes& page = pages[p];
    if (i0 == 0 && p + 1 < pages.size()) prefetch_bytes(pages[p + 1].codes, std::size_t(pages[p + 1].rows * packed));
    const std::uint8_t* codes = page.codes + i0;
    for (int r = 0; r < page.rows; ++r, codes += packed, weight += A) {
      const Vec w = L::load(weight);
      for (int k = 0; k < W; ++k) {
        float* t = table + (std::size_t(k) * 256 + codes[k]) * A;
        L::store(t, L::load(t) + w);
      }
    }
  }
  // Expansion: element i + f·quarter gets Σ_byte W[byte]·code_f(byte), summed over the byte's fields from
  // the lowest up, so that every partial sum stays in a register.
  for (int k = 0; k < W; ++k) {
    const int i = i0 + k;
    const float* t = table + std::size_t(k) * 256 * A;
    Vec v[4] = {};
    for (int c3 = 0; c3 < 4; ++c3) {
      Vec s3 = {};
      for (int c2 = 0; c2 < 4; ++c2) {
        Vec s2 = {};
        for (int c1 = 0; c1 < 4; ++c1) {
          const float* b = t + std::size_t(c3 * 64 + c2 * 16 + c1 * 4) * A;
          const Vec t0 = L::load(b), t1 = L::load(b + A), t2 = L::load(b + 2 * A), t3 = L::load(b + 3 * A);
          v[0] += t1 + t2 * 2.0f + t3 * 3.0f;
          const Vec s1 = (t0 + t1) + (t2 + t3);
          v[1] += s1 * float(c1);
          s2 += s1;
        }
        v[2] += s2 * float(c2);
        s3 += s2;
      }
      v[3] += s3 * float(c3);
    }
    for (int f = 0; f < 4; ++f) {
      const Vec value = v[f] - zero_sum;
      for (int a = 0; a < A; ++a) acc[std::size_t(a) * stride + i + f * quarter] = value[a];
    }
  }
}

/// The softmax state [m, l, acc[d]] (stride `state`) of each of the A query heads for an INT2 item, G = d.
template <int A>
void byte_item(const MixedKvCache& cache, int head, int page_begin, int page_end, const float* q, int n,
               float* result, std::size_t state) {
  using L = Lanes<A>;
  using Vec = typename L::Vec;
  constexpr int kSlice = A <= 4 ? 4 : 2;  // byte positions per slice: kSlice·256·A floats ≤ 16 KiB
  const Int2Config& kc = cache.int2_config(KvKind::kKey);
  const Int2Config& vc = cache.int2_config(KvKind::kValue);
  const int d = kc.head_dim, quarter = d / 4, packed = kc.packed_bytes();
  std::vector<PageCodes> key_pages, value_pages;
  std::vector<float> ks(std::size_t(n) * 2), vs(std::size_t(n) * 2);  // [row][scale, zero]
  {
    int j = 0;
    for (int p = page_begin; p < page_end; ++p) {
      const ConstInt2Rows kp = cache.int2_page(KvKind::kKey, head, p);
      const ConstInt2Rows vp = cache.int2_page(KvKind::kValue, head, p);
      const int rows = cache.int2_page_rows(p);
      if (p + 1 < page_end) {  // codes: by the table passes, just before they read them
        prefetch_int2_page(cache, KvKind::kKey, head, p + 1, false);
        prefetch_int2_page(cache, KvKind::kValue, head, p + 1, false);
      }
      key_pages.push_back({kp.codes, rows});
      value_pages.push_back({vp.codes, rows});
      for (int r = 0; r < rows; ++r, ++j) {
        ks[2 * std::size_t(j)] = param_at(kp.scales, r, kc.scale_type);
        ks[2 * std::size_t(j) + 1] = param_at(kp.zeros, r, kc.scale_type);
        vs[2 * std::size_t(j)] = param_at(vp.scales, r, vc.scale_type);
        vs[2 * std::size_t(j) + 1] = param_at(vp.zeros, r, vc.scale_type);
      }
    }
  }
  std::vector<float> table(std::size_t(kSlice) * 256 * A);
  std::vector<float> sc(std::size_t(n) * A);
  // Scores: Σ over slices of the table sums, then s·(Σ − z·Σq).
  {
    int i = 0;
    for (; i + kSlice <= quarter; i += kSlice) {
      score_pass<A, kSlice>(q, d, i, key_pages, packed, table.data(), sc.data(), i == 0);
    }
    for (; i < quarter; ++i) score_pass<A, 1>(q, d, i, key_pages, packed, table.data(), sc.data(), i == 0);
  }
  Vec q_sum;
  for (int a = 0; a < A; ++a) {
    float sum = 0.0f;
    for (int e = 0; e < d; ++e) sum += q[std::size_t(a) * d + e];
    q_sum[a] = sum;
  }
  float m[A];
  for (int a = 0; a < A; ++a) m[a] = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < n; ++j) {
    float* s = sc.data() + std::size_t(j) * A;
    const float scale = ks[2 * std::size_t(j)], zero = ks[2 * std::size_t(j) + 1];
    for (int a = 0; a < A; ++a) {
      s[a] = scale * (s[a] - zero * q_sum[a]);
      m[a] = std::max(m[a], s[a]);
    }
  }
  Vec mv;
  for (int a = 0; a < A; ++a) mv[a] = m[a];
  for (int j = 0; j < n; ++j) L::store(sc.data() + std::size_t(j) * A, L::load(sc.data() + std::size_t(j) * A) - mv);
  attention_detail::exp_nonpositive(sc.data(), n * A);
  // l = Σ p, weights w = p·s_v (in place), Σ w·z_v.
  Vec l0 = {}, l1 = {}, z0 = {}, z1 = {};
  {
    int j = 0;
    for (; j + 2 <= n; j += 2) {
      float* s = sc.data() + std::size_t(j) * A;
      const Vec p0 = L::load(s), p1 = L::load(s + A);
      l0 += p0;
      l1 += p1;
      const Vec w0 = p0 * vs[2 * std::size_t(j)], w1 = p1 * vs[2 * std::size_t(j) + 2];
      z0 += w0 * vs[2 * std::size_t(j) + 1];
      z1 += w1 * vs[2 * std::size_t(j) + 3];
      L::store(s, w0);
      L::store(s + A, w1);
    }
    if (j < n) {
      float* s = sc.data() + std::size_t(j) * A;
      const Vec p0 = L::load(s);
      l0 += p0;
      const Vec w0 = p0 * vs[2 * std::size_t(j)];
      z0 += w0 * vs[2 * std::size_t(j) + 1];
      L::store(s, w0);
    }
  }
  const Vec l = l0 + l1, zero_sum = z0 + z1;
  for (int a = 0; a < A; ++a) {
    result[std::size_t(a) * state] = m[a];
    result[std::size_t(a) * state + 1] = l[a];
  }
  {
    const int vpacked = vc.packed_bytes();
    int i = 0;
    for (; i + kSlice <= quarter; i += kSlice) {
      value_pass<A, kSlice>(d, i, value_pages, vpacked, table.data(), sc.data(), zero_sum, result + 2, state);
    }
    for (; i < quarter; ++i) {
      value_pass<A, 1>(d, i, value_pages, vpacked, table.data(), sc.data(), zero_sum, result + 2, state);
    }
  }
}

using LutItem = void (*)(const MixedKvCache&, int, int, int, const float*, int, float*, std::size_t);

using LutScores = void (*)(const MixedKvCache&, int, int, int, const float*, float*, int);
using LutValues = void (*)(const MixedKvCache&, int, int, int, const float*, int, float*, std::size_t);

/// The table kernels for A query heads per KV head, where the formats allow them (nullptr where not): keys and
/// values each by byte tables (G = d) or nibble tables (G = d/2), and the whole item by byte_item when both
/// kinds have G = d.
struct LutKernels {
  LutScores key = nullptr;
  LutValues value = nullptr;
  LutItem item = nullptr;
};

template <int A>
LutKernels lut_kernels(const Int2Config& kc, const Int2Config& vc) {
  LutKernels k;
  if (kc.group_size == kc.head_dim) k.key = byte_scores<A>;
  if (2 * kc.group_size == kc.head_dim) k.key = nibble_scores<A>;
  if (vc.group_size == vc.head_dim) k.value = byte_values<A>;
  if (2 * vc.group_size == vc.head_dim) k.value = nibble_values<A>;
  if (kc.group_size == kc.head_dim && vc.group_size == vc.head_dim && kc.head_dim == vc.head_dim) {
    k.item = byte_item<A>;
  }
  return k;
}

}  // namespace

void decode_attention(const MixedKvCache& cache, const float* q, int q_heads, float* out,
                      const AttentionOptions& options) {
  const MixedCacheConfig& config = cache.config();
  const int d = config.head_dim, hkv = config.kv_heads;
  attention_detail::check_decode_arguments(cache, q_heads);
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

  // Table kernels for INT2 items where they apply (G = d or d/2, and 1, 2, 4 or 8 query heads per KV head);
  // otherwise rows are dequantised one at a time and go through the same loops as full-precision rows.
  LutKernels luts;
  if (options.use_tables) {
    switch (group) {
      case 1: luts = lut_kernels<1>(kc, vc); break;
      case 2: luts = lut_kernels<2>(kc, vc); break;
      case 4: luts = lut_kernels<4>(kc, vc); break;
      case 8: luts = lut_kernels<8>(kc, vc); break;
      default: break;
    }
  }
  const LutScores key_lut = luts.key;
  const LutValues value_lut = luts.value;
  const LutItem item_lut = luts.item;

  const auto run = [&](int index) {
    const Item& item = items[std::size_t(index)];
    const int n = item.count, g = item.head;
    const float* qg = qs.data() + std::size_t(g) * group * d;
    if (item.int2 && item_lut) {
      item_lut(cache, g, item.page_begin, item.page_end, qg, n, partial.data() + std::size_t(index) * group * state,
               state);
      return;
    }
    std::vector<float> scores(std::size_t(group) * n);
    constexpr int kBlock = 4;
    std::vector<float> block(std::size_t(kBlock) * d);
    // Calls f(j, rows, count) for consecutive blocks of up to kBlock rows j.. of the item, with the key or
    // value rows as float ([count][d] in `block`).
    const auto for_blocks = [&](KvKind kind, const auto& f) {
      if (!item.int2) {
        const std::uint8_t* base = kind == KvKind::kKey ? item.keys : item.values;
        for (int j = 0; j < n; j += kBlock) {
          const int count = std::min(kBlock, n - j);
          widen_full_precision(base + std::size_t(j) * rb, std::size_t(count) * d, storage, block.data());
          f(j, block.data(), count);
        }
        return;
      }
      const Int2Config& c = kind == KvKind::kKey ? kc : vc;
      int j = 0, count = 0;
      for (int p = item.page_begin; p < item.page_end; ++p) {
        const ConstInt2Rows page = cache.int2_page(kind, g, p);
        const int rows = cache.int2_page_rows(p);
        for (int r = 0; r < rows; ++r) {
          dequantize_row(offset_row(page, c, r), c, block.data() + std::size_t(count) * d);
          if (++count == kBlock) {
            f(j, block.data(), count);
            j += count;
            count = 0;
          }
        }
      }
      if (count > 0) f(j, block.data(), count);
    };
    if (item.int2 && key_lut) {
      key_lut(cache, g, item.page_begin, item.page_end, qg, scores.data(), n);
    } else {
      for_blocks(KvKind::kKey, [&](int j, const float* keys, int count) {
        for (int r = 0; r < count; ++r) {
          for (int a = 0; a < group; ++a) {
            scores[std::size_t(a) * n + j + r] = dot(qg + std::size_t(a) * d, keys + std::size_t(r) * d, d);
          }
        }
      });
    }
    float* result = partial.data() + std::size_t(index) * group * state;
    for (int a = 0; a < group; ++a) {
      float* s = scores.data() + std::size_t(a) * n;
      float m = -std::numeric_limits<float>::infinity();
      for (int j = 0; j < n; ++j) m = std::max(m, s[j]);
      for (int j = 0; j < n; ++j) s[j] -= m;
      attention_detail::exp_nonpositive(s, n);
      float l4[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      int j = 0;
      for (; j + 4 <= n; j += 4) {
        for (int k = 0; k < 4; ++k) l4[k] += s[j + k];
      }
      float l = (l4[0] + l4[1]) + (l4[2] + l4[3]);
      for (; j < n; ++j) l += s[j];
      float* st = result + std::size_t(a) * state;
      st[0] = m;
      st[1] = l;
      std::fill(st + 2, st + state, 0.0f);
    }
    if (item.int2 && value_lut) {
      value_lut(cache, g, item.page_begin, item.page_end, scores.data(), n, result + 2, state);
    } else {
      // acc += Σ_r p_r·v_r over blocks of 4 rows: one pass over the accumulator per block.
      for_blocks(KvKind::kValue, [&](int j, const float* values, int count) {
        for (int a = 0; a < group; ++a) {
          const float* p = scores.data() + std::size_t(a) * n + j;
          float* y = result + std::size_t(a) * state + 2;
          if (count == kBlock) {
            const float p0 = p[0], p1 = p[1], p2 = p[2], p3 = p[3];
            const float *v0 = values, *v1 = values + d, *v2 = values + 2 * d, *v3 = values + 3 * d;
            for (int e = 0; e < d; ++e) y[e] += (p0 * v0[e] + p1 * v1[e]) + (p2 * v2[e] + p3 * v3[e]);
          } else {
            for (int r = 0; r < count; ++r) axpy(p[r], values + std::size_t(r) * d, y, d);
          }
        }
      });
    }
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

/// x[i] ← e^x[i] for x[i] ≤ 0, 4 floats at a time with the operations of exp_nonpositive_scalar (so the
/// same results element by element); used by every path, so 16-bit and INT2 decode pay the same for exp.
void attention_detail::exp_nonpositive(float* x, int n) {
  using L = Lanes<4>;
  using Vec = L::Vec;
  typedef std::int32_t IVec __attribute__((vector_size(16)));
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    const Vec input = L::load(x + i);
    const IVec below = input < attention_detail::kExpFlushBelow;
    const Vec flush = Vec{} + attention_detail::kExpFlushBelow;
    IVec vbits, fbits;
    std::memcpy(&vbits, &input, sizeof vbits);
    std::memcpy(&fbits, &flush, sizeof fbits);
    const IVec clamped_bits = (fbits & below) | (vbits & ~below);
    Vec v;
    std::memcpy(&v, &clamped_bits, sizeof v);
    const Vec k = (v * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    Vec r = v - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    Vec p = Vec{} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const IVec two_k_bits = (__builtin_convertvector(k, IVec) + 127) << 23;
    Vec two_k;
    std::memcpy(&two_k, &two_k_bits, sizeof two_k);
    const Vec e = p * two_k;
    IVec ebits;
    std::memcpy(&ebits, &e, sizeof ebits);
    const IVec out_bits = ebits & ~below;
    Vec out;
    std::memcpy(&out, &out_bits, sizeof out);
    L::store(x + i, out);
  }
  if (i < n) exp_nonpositive_scalar(x + i, n - i);
}

}  // namespace oscar::runtime
