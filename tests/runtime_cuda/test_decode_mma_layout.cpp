// Emulation tests of the tensor-core decode kernel's register layouts (decode_mma_layout.cuh), on any machine:
// every lane's fragments are built as the kernel builds them (from packed rows made by the CPU runtime's
// pack_codes), multiplied as the PTX ISA defines mma.sync m16n8k32 (s8) and m16n8k16 (f16) element by
// element (the definitions below are written from the ISA's fragment tables, independently of the layout
// header), and the products are compared with the formulas: S[h][t] = Σ_{j ∈ group} Q[h][j]·code_t[j] exactly,
// O[j][h] = Σ_t code_t[j]·P[h][t].
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "runtime/cuda/decode_mma_layout.cuh"
#include "runtime/int2_quantize.h"

namespace oscar::runtime {
namespace {

namespace mma = gpu::detail::mma;

constexpr int kLanes = 32;

// ---- mma.sync as the PTX ISA defines it (element i of a thread's fragment, groupID g, threadID_in_group t) --

/// m16n8k32 .s8: a_i (i < 16, byte i%4 of register i/4), b_i (i < 8), c_i (i < 4). D = A·B + C.
void emulate_mma_s8(const std::uint32_t (&a)[kLanes][4], const std::uint32_t (&b)[kLanes][2],
                    std::int64_t (&c)[kLanes][4]) {
  std::int64_t A[16][32] = {}, B[32][8] = {};
  for (int lane = 0; lane < kLanes; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 16; ++i) {
      const int row = (i < 4 || (i >= 8 && i < 12)) ? g : g + 8;
      const int col = t * 4 + (i & 3) + (i >= 8 ? 16 : 0);
      A[row][col] = std::int8_t((a[lane][i / 4] >> (8 * (i % 4))) & 0xff);
    }
    for (int i = 0; i < 8; ++i) {
      B[t * 4 + (i & 3) + (i >= 4 ? 16 : 0)][g] = std::int8_t((b[lane][i / 4] >> (8 * (i % 4))) & 0xff);
    }
  }
  for (int lane = 0; lane < kLanes; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + (i >= 2 ? 8 : 0), col = t * 2 + (i & 1);
      for (int k = 0; k < 32; ++k) c[lane][i] += A[row][k] * B[k][col];
    }
  }
}

/// m16n8k16 .f16 with f32 accumulation, on already-decoded element values: a_i (i < 8), b_i (i < 4).
void emulate_mma_f16(const double (&a)[kLanes][8], const double (&b)[kLanes][4], double (&c)[kLanes][4]) {
  double A[16][16] = {}, B[16][8] = {};
  for (int lane = 0; lane < kLanes; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 8; ++i) {
      const int row = (i == 0 || i == 1 || i == 4 || i == 5) ? g : g + 8;
      A[row][t * 2 + (i & 1) + (i >= 4 ? 8 : 0)] = a[lane][i];
    }
    for (int i = 0; i < 4; ++i) B[t * 2 + (i & 1) + (i >= 2 ? 8 : 0)][g] = b[lane][i];
  }
  for (int lane = 0; lane < kLanes; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + (i >= 2 ? 8 : 0), col = t * 2 + (i & 1);
      for (int k = 0; k < 16; ++k) c[lane][i] += A[row][k] * B[k][col];
    }
  }
}

// ---- Inputs -----------------------------------------------------------------------------------------------------

struct Tile {
  int d;
  std::vector<std::vector<std::uint8_t>> codes;   // [16 tokens][d], 0…3
  std::vector<std::vector<std::uint8_t>> packed;  // [16 tokens][d/4], the format's packing
};

Tile random_tile(int d, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> code(0, 3);
  Tile tile{d, {}, {}};
  for (int t = 0; t < mma::kTileTokens; ++t) {
    std::vector<std::uint8_t> c(std::size_t(d), 0), p(std::size_t(d / 4), 0);
    for (auto& x : c) x = std::uint8_t(code(rng));
    pack_codes(c.data(), d, p.data());
    tile.codes.push_back(c);
    tile.packed.push_back(p);
  }
  return tile;
}

std::uint32_t word_at(const std::vector<std::uint8_t>& row, int word) {
  std::uint32_t w = 0;
  for (int b = 0; b < 4; ++b) w |= std::uint32_t(row[std::size_t(4 * word + b)]) << (8 * b);
  return w;
}

// ---- Keys -------------------------------------------------------------------------------------------------------

template <int D>
void check_scores(int group_size, std::uint32_t seed) {
  using KL = mma::KeyLayout<D>;
  const Tile tile = random_tile(D, seed);
  std::mt19937 rng(seed + 1);
  std::uniform_int_distribution<int> value(-4194304, 4194304);
  std::vector<std::vector<int>> query(mma::kRows, std::vector<int>(std::size_t(D)));
  for (auto& row : query) {
    for (int& x : row) x = value(rng);
  }
  query[0][0] = 4194304;  // the extremes of the scaled query
  query[1][D - 1] = -4194304;

  // The lane's key words as load_key_words loads them (pairs of consecutive words for d ≥ 128).
  for (int r = 0; r < 4; ++r) {
    for (int i = 0; i + 1 < KL::kLaneWords; i += 2) EXPECT_EQ(KL::loaded_word(r, i + 1), KL::loaded_word(r, i) + 1);
  }
  const int slices_per_group = group_size / 32;
  for (int group = 0; group < D / group_size; ++group) {
    for (int n = 0; n < 2; ++n) {  // n-tile: tokens 8n … 8n+7
      std::int64_t limb_dot[3][kLanes][4] = {};
      for (int s = group * slices_per_group; s < (group + 1) * slices_per_group; ++s) {
        for (int limb = 0; limb < 3; ++limb) {
          std::uint32_t a[kLanes][4] = {}, b[kLanes][2] = {};
          for (int lane = 0; lane < kLanes; ++lane) {
            const int g = lane / 4, r = lane % 4;
            std::uint32_t limbs[2][3];
            for (int j = 0; j < 2; ++j) mma::query_fragments<D>(query[std::size_t(g)].data(), s, r, j, limbs[j]);
            a[lane][0] = limbs[0][limb];
            a[lane][2] = limbs[1][limb];
            std::uint32_t words[KL::kLaneWords];
            for (int i = 0; i < KL::kLaneWords; ++i) {
              words[i] = word_at(tile.packed[std::size_t(8 * n + g)], KL::loaded_word(r, i));
            }
            b[lane][0] = KL::codes(words, s, 0);
            b[lane][1] = KL::codes(words, s, 1);
          }
          emulate_mma_s8(a, b, limb_dot[limb]);
        }
      }
      for (int lane = 0; lane < kLanes; ++lane) {
        const int g = lane / 4, r = lane % 4;
        for (int i = 0; i < 4; ++i) {
          const std::int64_t got = limb_dot[2][lane][i] * 65536 + limb_dot[1][lane][i] * 256 + limb_dot[0][lane][i];
          if (i >= 2) {  // rows 8…15: no query heads
            ASSERT_EQ(got, 0);
            continue;
          }
          const int token = 8 * n + 2 * r + i;
          ASSERT_EQ(mma::lane_token(r, 2 * n + i), token);
          std::int64_t want = 0;
          for (int j = group * group_size; j < (group + 1) * group_size; ++j) {
            want += std::int64_t(query[std::size_t(g)][std::size_t(j)]) * tile.codes[std::size_t(token)][std::size_t(j)];
          }
          ASSERT_EQ(got, want) << "d " << D << " group " << group << " head " << g << " token " << token;
        }
      }
    }
  }
}

TEST(DecodeMmaLayout, ScoresAreExactPerGroup) {
  for (int group : {32, 64}) {
    check_scores<64>(group, 11u);
    check_scores<128>(group, 12u);
    check_scores<256>(group, 13u);
  }
  check_scores<128>(128, 14u);
  check_scores<256>(256, 15u);
}

TEST(DecodeMmaLayout, KeySlicesCoverTheirOwn32Dims) {
  auto check = [](auto layout, int d) {
    using KL = decltype(layout);
    for (int s = 0; s < KL::kSlices; ++s) {
      std::set<int> dims;
      for (int r = 0; r < 4; ++r) {
        for (int j = 0; j < 2; ++j) {
          for (int b = 0; b < 4; ++b) dims.insert(KL::dim(s, r, j, b));
        }
      }
      ASSERT_EQ(dims.size(), 32u) << "d " << d << " slice " << s;
      EXPECT_EQ(*dims.begin(), 32 * s);
      EXPECT_EQ(*dims.rbegin(), 32 * s + 31);
    }
  };
  check(mma::KeyLayout<64>{}, 64);
  check(mma::KeyLayout<128>{}, 128);
  check(mma::KeyLayout<256>{}, 256);
}

TEST(DecodeMmaLayout, QueryLimbsAreExact) {
  std::vector<int> values = {0, 1, -1, 127, 128, -128, -129, 255, 256, 32767, -32768, 4194304, -4194304, 4194305,
                             -4194305};
  std::mt19937 rng(3u);
  std::uniform_int_distribution<int> any(-4194305, 4194305);
  for (int i = 0; i < 10000; ++i) values.push_back(any(rng));
  for (int q : values) {
    int limb[3];
    mma::query_limbs(q, limb);
    for (int l : limb) {
      ASSERT_GE(l, -128) << q;
      ASSERT_LE(l, 127) << q;
    }
    ASSERT_EQ(limb[2] * 65536 + limb[1] * 256 + limb[0], q);
  }
}

// ---- Values -----------------------------------------------------------------------------------------------------

template <int D>
void check_values(std::uint32_t seed) {
  using VL = mma::ValueLayout<D>;
  const Tile tile = random_tile(D, seed);
  std::mt19937 rng(seed + 1);
  std::uniform_real_distribution<double> prob(0.0, 1.0);
  double p[mma::kRows][mma::kTileTokens];
  for (auto& row : p) {
    for (double& x : row) x = prob(rng);
  }

  std::set<int> covered;
  for (int t = 0; t < VL::kTiles; ++t) {
    double a[kLanes][8] = {}, b[kLanes][4] = {}, c[kLanes][4] = {};
    for (int lane = 0; lane < kLanes; ++lane) {
      const int g = lane / 4, r = lane % 4;
      // The lane's value words as load_value_words loads them: d 64 the 16-bit unit g, else words g, 8+g.
      std::uint32_t words[4][VL::kWords];
      for (int i = 0; i < 4; ++i) {
        const auto& row = tile.packed[std::size_t(mma::lane_token(r, i))];
        for (int w = 0; w < VL::kWords; ++w) {
          words[i][w] = D == 64 ? std::uint32_t(row[std::size_t(2 * g)]) | std::uint32_t(row[std::size_t(2 * g + 1)]) << 8
                                : word_at(row, 8 * w + g);
        }
        for (int k = 0; k < VL::kLaneBytes; ++k) {  // the layout's byte map is what was loaded
          ASSERT_EQ((words[i][k / 4] >> (8 * (k % 4))) & 0xff, row[std::size_t(VL::byte(g, k))]);
        }
      }
      const int pair = VL::tile_pair(t), quarter = VL::tile_quarter(t);
      ASSERT_EQ(VL::tile(pair, quarter), t);
      const std::uint32_t first = VL::pair_bytes(words[0], words[1], pair);
      const std::uint32_t second = VL::pair_bytes(words[2], words[3], pair);
      const std::uint32_t regs[4] = {VL::code_pair(first, quarter, 0), VL::code_pair(first, quarter, 1),
                                     VL::code_pair(second, quarter, 0), VL::code_pair(second, quarter, 1)};
      for (int i = 0; i < 8; ++i) a[lane][i] = double((regs[i / 2] >> (16 * (i % 2))) & 0xffff);
      // P': register 0 holds the lane's tokens 0 and 1, register 1 its tokens 2 and 3 (head g).
      for (int i = 0; i < 4; ++i) b[lane][i] = p[g][mma::lane_token(r, i)];
    }
    emulate_mma_f16(a, b, c);
    for (int lane = 0; lane < kLanes; ++lane) {
      const int g = lane / 4, r = lane % 4;
      for (int i = 0; i < 4; ++i) {
        const int row = g + 8 * (i / 2), head = 2 * r + i % 2, dim = VL::dim(t, row);
        ASSERT_EQ(dim / 32, VL::group32(t)) << "d " << D << " tile " << t << " row " << row;
        covered.insert(dim);
        double want = 0.0;
        for (int token = 0; token < mma::kTileTokens; ++token) {
          want += tile.codes[std::size_t(token)][std::size_t(dim)] * p[head][token];
        }
        ASSERT_NEAR(c[lane][i], want, 1e-12) << "d " << D << " tile " << t << " dim " << dim << " head " << head;
      }
    }
  }
  EXPECT_EQ(covered.size(), std::size_t(D));
}

TEST(DecodeMmaLayout, ValueProductsMatchTheFormula) {
  check_values<64>(21u);
  check_values<128>(22u);
  check_values<256>(23u);
}

TEST(DecodeMmaLayout, BytePermMatchesTheIsa) {
  // prmt: selector nibble i picks byte i of the result from the 8 bytes {hi:lo}.
  EXPECT_EQ(mma::byte_perm(0x33221100u, 0x77665544u, 0x3210u), 0x33221100u);
  EXPECT_EQ(mma::byte_perm(0x33221100u, 0x77665544u, 0x7654u), 0x77665544u);
  EXPECT_EQ(mma::byte_perm(0x33221100u, 0x77665544u, 0x5140u), 0x55114400u);
}

}  // namespace
}  // namespace oscar::runtime
