// Register layouts of the tensor-core INT2 decode kernel (decode_mma.cu). Host- and device-callable, so that
// the tests can build every lane's fragments on the CPU, multiply them as the PTX ISA defines mma.sync, and
// check the products against the formulas (tests/runtime_cuda/test_decode_mma_layout.cpp).
//
// A warp takes 16 INT2 tokens of one KV head at a time, for up to 8 query heads (rows 0…7 of the 16-row MMA
// operand; rows 8…15 are zero). Lane = 4·g + r (g = lane / 4, r = lane % 4, the PTX "groupID" and
// "threadID_in_group").
//
// Scores, S[h][t] = Σ_j Q[h][j]·c[t][j], on mma.m16n8k32 s8 (integer, exact): A = query limbs [16 heads × 32
// dims], B = key codes [32 dims × 8 tokens], two 8-token n-tiles per warp tile. The codes need no conversion:
// (word >> 2m) & 0x03030303 is four codes as four int8, one B register. Slice s (32 dims) covers the physical
// dims [32s, 32s+32), so a group of 32 or 64 is one or two whole slices. The dims' order inside a slice is the
// packing's (byte i of a row holds dims i, i+d/4, i+d/2, i+3d/4); the query fragment uses the same order.
//
// Values, O[j][h] = Σ_t c[t][j]·P'[h][t], on mma.m16n8k16 f16 (f32 accumulate): A = value codes [16 dims × 16
// tokens] (codes 0…3 are exact halves, made with the 0x6400 magic number), B = P' [16 tokens × 8 heads], which
// is where the score MMA's accumulator already holds the lane's probabilities (tokens 2r, 2r+1, 2r+8, 2r+9 of
// head g), so no shuffle is needed. An m-tile's 16 dims lie in one group of 32, so one P' (probability ×
// the group's scale) serves the whole tile.
#pragma once

#include <cstdint>

#include "runtime/cuda/quantize_row.cuh"  // OSCAR_HD

namespace oscar::runtime::gpu::detail::mma {

inline constexpr int kTileTokens = 16;
inline constexpr int kRows = 8;  ///< query heads per launch (MMA rows 0…7)

/// __byte_perm: byte i of the result is byte (selector >> 4i) & 7 of the 8-byte value hi:lo.
OSCAR_HD std::uint32_t byte_perm(std::uint32_t lo, std::uint32_t hi, std::uint32_t selector) {
#if defined(__CUDA_ARCH__)
  return __byte_perm(lo, hi, selector);
#else
  const std::uint64_t both = (std::uint64_t(hi) << 32) | lo;
  std::uint32_t out = 0;
  for (int i = 0; i < 4; ++i) out |= std::uint32_t((both >> (8 * ((selector >> (4 * i)) & 7))) & 0xffu) << (8 * i);
  return out;
#endif
}

// ---- Keys ------------------------------------------------------------------------------------------------------

/// 32-bit words of a packed key row that lane r loads (for token g of each n-tile).
template <int D>
struct KeyLayout {
  static constexpr int kWords = D / 16;           ///< words per packed row
  static constexpr int kLaneWords = kWords / 4;   ///< words each lane loads
  static constexpr int kSlices = D / 32;

  /// Row word of the lane's i-th loaded word: d 64: r; d 128: 2r, 2r+1; d 256: 2r, 2r+1, 8+2r, 9+2r.
  OSCAR_HD static int loaded_word(int r, int i) {
    if (D == 64) return r;
    return 8 * (i / 2) + 2 * r + i % 2;
  }
  /// Which loaded word feeds B register j (0: k 4r…4r+3, 1: k 16+4r…) of slice s.
  OSCAR_HD static int reg_word(int s, int j) {
    if (D == 64) return 0;
    if (D == 128) return j;
    return 2 * (s % 2) + j;
  }
  /// Bit shift (2m: which quarter of the row) of that register's codes.
  OSCAR_HD static int reg_shift(int s, int j) {
    if (D == 64) return 2 * (2 * s + j);
    if (D == 128) return 2 * s;
    return 2 * (s / 2);
  }
  /// Physical dim of code b (0…3) of register j of slice s in lane r.
  OSCAR_HD static int dim(int s, int r, int j, int b) {
    return 4 * loaded_word(r, reg_word(s, j)) + b + (D / 4) * (reg_shift(s, j) / 2);
  }
  /// B register j of slice s: four codes as int8.
  OSCAR_HD static std::uint32_t codes(const std::uint32_t* words, int s, int j) {
    return (words[reg_word(s, j)] >> reg_shift(s, j)) & 0x03030303u;
  }
};

/// The query as three signed 8-bit limbs: Q = L2·2^16 + L1·2^8 + L0, each limb in [−128, 127], for
/// |Q| ≤ 2^22 (the query scaled so that its largest magnitude is 2^22). Exact.
OSCAR_HD void query_limbs(int q, int (&limb)[3]) {
  for (int l = 0; l < 2; ++l) {
    limb[l] = int(static_cast<std::int8_t>(q & 0xff));
    q = (q - limb[l]) / 256;
  }
  limb[2] = q;
}
inline constexpr float kQueryMagnitude = 4194304.0f;  ///< 2^22

/// A register j (0: row g k 4r…, 1: row g k 16+4r…) of slice s for each limb, from the head's integer query.
template <int D>
OSCAR_HD void query_fragments(const int* head_query, int s, int r, int j, std::uint32_t (&out)[3]) {
  out[0] = out[1] = out[2] = 0;
  for (int b = 0; b < 4; ++b) {
    int limb[3];
    query_limbs(head_query[KeyLayout<D>::dim(s, r, j, b)], limb);
    for (int l = 0; l < 3; ++l) out[l] |= std::uint32_t(std::uint8_t(limb[l])) << (8 * b);
  }
}

// ---- Values ----------------------------------------------------------------------------------------------------

/// Bytes of a packed value row that lane g loads for each of its tokens (2r, 2r+1, 2r+8, 2r+9 of the tile):
/// d 64: bytes 2g, 2g+1; d 128: 4g…4g+3; d 256: 4g…4g+3 and 32+4g…35+4g — as kWords words (low bytes first).
template <int D>
struct ValueLayout {
  static constexpr int kRowBytes = D / 4;
  static constexpr int kLaneBytes = kRowBytes / 8;
  static constexpr int kWords = kLaneBytes >= 4 ? kLaneBytes / 4 : 1;
  static constexpr int kTiles = D / 16;        ///< m-tiles of 16 dims
  static constexpr int kPairs = kLaneBytes / 2;  ///< byte pairs (rows g, g+8 of an m-tile)

  /// Physical byte of the lane's byte k.
  OSCAR_HD static int byte(int g, int k) { return (k / 4) * 32 + g * (kLaneBytes < 4 ? kLaneBytes : 4) + k % 4; }
  /// m-tile = (pair κ, quarter m): row g is the lane's byte 2κ, row g+8 its byte 2κ+1, codes of quarter m.
  OSCAR_HD static int tile(int pair, int m) { return m * kPairs + pair; }
  OSCAR_HD static int tile_pair(int tile) { return tile % kPairs; }
  OSCAR_HD static int tile_quarter(int tile) { return tile / kPairs; }
  /// Physical dim of row (0…15) of m-tile `tile`.
  OSCAR_HD static int dim(int tile, int row) {
    return byte(row % 8, 2 * tile_pair(tile) + row / 8) + kRowBytes * tile_quarter(tile);
  }
  /// Group of 32 dims that the m-tile lies in.
  OSCAR_HD static int group32(int tile) { return dim(tile, 0) / 32; }

  /// Bytes 2κ, 2κ+1 of the lane's words for two tokens: [x.2κ, x.2κ+1, y.2κ, y.2κ+1].
  OSCAR_HD static std::uint32_t pair_bytes(const std::uint32_t* x, const std::uint32_t* y, int pair) {
    const int word = (2 * pair) / 4, b = (2 * pair) % 4;
    return byte_perm(x[word], y[word], std::uint32_t(b | (b + 1) << 4 | (b + 4) << 8 | (b + 5) << 12));
  }
  /// Two codes as the low and high 16 bits (first token low): row g (upper = 0) or g+8 (upper = 1) of
  /// quarter m, from pair_bytes. The kernel turns them into halves.
  OSCAR_HD static std::uint32_t code_pair(std::uint32_t pair_bytes_value, int m, int upper) {
    return (pair_bytes_value >> (2 * m + 8 * upper)) & 0x00030003u;
  }
};

/// Column (token within the 16-token tile) of element i (0…3) of the lane's scores (score MMA accumulator c0,
/// c1 of n-tiles 0 and 1), which are also the tokens of its P' fragment and of the value rows it loads.
OSCAR_HD int lane_token(int r, int i) { return 8 * (i / 2) + 2 * r + i % 2; }

}  // namespace oscar::runtime::gpu::detail::mma
