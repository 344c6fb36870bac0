#include "runtime/int2_pack.h"

#include <algorithm>

#include "core/parallel_for.h"
#include "runtime/int2_quantize.h"

namespace oscar::runtime {

namespace {

/// Applies `apply(head, in, out)` to every row [tokens, heads, d] in parallel over tokens.
template <typename Apply>
std::vector<float> map_rows(const float* x, std::int64_t tokens, int heads, int d, int threads, Apply apply) {
  std::vector<float> out(std::size_t(tokens) * heads * d);
  const int blocks = int(std::min<std::int64_t>(tokens, 64 * std::int64_t(threads > 0 ? threads : 1)));
  parallel_for(blocks, threads, [&](int block) {
    for (std::int64_t t = tokens * block / blocks; t < tokens * (block + 1) / blocks; ++t) {
      for (int h = 0; h < heads; ++h) {
        const std::size_t row = (std::size_t(t) * heads + h) * d;
        apply(h, x + row, out.data() + row);
      }
    }
  });
  return out;
}

}  // namespace

PackedRows pack_rows(const float* x, std::int64_t tokens, int heads, const Rotation& rotation,
                     const Int2Config& config, int threads) {
  validate(config);
  rotation.check_compatible(heads, config.head_dim, "pack");
  const int d = config.head_dim;
  const std::vector<float> rotated = rotation.is_identity()
      ? std::vector<float>(x, x + std::size_t(tokens) * heads * d)
      : map_rows(x, tokens, heads, d, threads, [&](int h, const float* in, float* out) { rotation.apply(h, in, out); });
  PackedRows packed;
  packed.config = config;
  packed.tokens = tokens;
  packed.heads = heads;
  packed.codes.resize(std::size_t(packed.rows()) * config.packed_bytes());
  packed.scales.resize(std::size_t(packed.rows()) * config.groups() * packed.scale_bytes());
  packed.zeros.resize(packed.scales.size());
  quantize_rows(rotated.data(), packed.rows(), config, {packed.codes.data(), packed.scales.data(), packed.zeros.data()},
                threads);
  return packed;
}

std::vector<float> unpack_rows(const PackedRows& packed, const Rotation& rotation, int threads) {
  const int d = packed.config.head_dim;
  std::vector<float> rows(std::size_t(packed.rows()) * d);
  dequantize_rows({packed.codes.data(), packed.scales.data(), packed.zeros.data()}, packed.rows(), packed.config,
                  rows.data(), threads);
  if (rotation.is_identity()) return rows;
  rotation.check_compatible(packed.heads, d, "unpack");
  return map_rows(rows.data(), packed.tokens, packed.heads, d, threads,
                  [&](int h, const float* in, float* out) { rotation.apply_transpose(h, in, out); });
}

}  // namespace oscar::runtime
