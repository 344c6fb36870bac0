// oscar-int2 end to end: PyTorch writes rows, we pack them, PyTorch recomputes the INT2 format from the
// reference formulas (its own float32 arithmetic) and compares codes, scales and zeros bit for bit.
#include <gtest/gtest.h>

#include <filesystem>

#include "../io/io_test_support.h"

namespace {

namespace fs = std::filesystem;
using oscar::test::run_command;
using oscar::test::run_python;
using oscar::test::shell_quote;
using oscar::test::TempDir;

std::string int2_binary() { return (fs::path(OSCAR_CALIBRATE_BIN).parent_path() / "oscar-int2").string(); }

int oscar_int2(const std::string& arguments) { return run_command(shell_quote(int2_binary()) + " " + arguments); }

/// Random rows [50, 2, 64] with per-dimension scales and a few outliers, float32 and bfloat16.
void write_rows(const TempDir& dir) {
  ASSERT_EQ(run_python(dir, R"(
import sys, torch
g = torch.Generator().manual_seed(3)
x = torch.randn(50, 2, 64, generator=g) * torch.linspace(0.2, 3.0, 64)
x[5, 1, 7] = 40.0
x[9, 0, :] = 1.5   # a constant row
torch.save(x, sys.argv[1])
torch.save(x.to(torch.bfloat16), sys.argv[2])
)", {dir / "x.pt", dir / "x_bf16.pt"}), 0);
}

// The reference formulas in torch float32, written from the spec (reference doc §5), and the comparison.
const char* kCheckPack = R"(
import sys, torch
x = torch.load(sys.argv[1]).float().reshape(-1, 64)
pack = torch.load(sys.argv[2], weights_only=True)
clip, group = float(sys.argv[3]), int(sys.argv[4])
d = 64
assert pack["head_dim"] == d and pack["group_size"] == group and pack["scale_type"] == "float32", pack.keys()
assert pack["codes"].dtype == torch.uint8 and list(pack["codes"].shape) == [50, 2, d // 4]
idx = min(max(int(clip * d), 0), d - 1)
tau = x.abs().sort(dim=1).values[:, idx:idx + 1]
x = torch.maximum(torch.minimum(x, tau), -tau)
g = x.reshape(-1, d // group, group)
mn, mx = g.amin(dim=2, keepdim=True), g.amax(dim=2, keepdim=True)
scale = (mx - mn).clamp(min=1e-8) / 3
zero = -mn / scale
codes = (g / scale + zero + 0.5).to(torch.int32).clamp(0, 3).to(torch.uint8).reshape(-1, d)
q = d // 4
packed = codes[:, :q] | (codes[:, q:2*q] << 2) | (codes[:, 2*q:3*q] << 4) | (codes[:, 3*q:] << 6)
assert torch.equal(pack["codes"].reshape(-1, q), packed), "codes differ"
assert torch.equal(pack["scales"].reshape(-1), scale.reshape(-1)), "scales differ"
assert torch.equal(pack["zeros"].reshape(-1), zero.reshape(-1)), "zeros differ"
)";

}  // namespace

TEST(Int2Cli, PackMatchesTheReferenceFormulasBitForBit) {
  TempDir dir;
  write_rows(dir);
  for (const auto& [clip, group] : std::vector<std::pair<std::string, std::string>>{{"0.96", "64"}, {"0.92", "32"}}) {
    SCOPED_TRACE(clip + " / " + group);
    const std::string pack = dir / ("pack_" + group + ".pt");
    ASSERT_EQ(oscar_int2("pack --in " + shell_quote(dir / "x.pt") + " --clip " + clip + " --group " + group +
                         " --out " + shell_quote(pack)), 0);
    EXPECT_EQ(run_python(dir, kCheckPack, {dir / "x.pt", pack, clip, group}), 0);
  }
  // bfloat16 input is widened exactly: the same formulas on the bf16 values.
  ASSERT_EQ(oscar_int2("pack --in " + shell_quote(dir / "x_bf16.pt") + " --kind v --out " + shell_quote(dir / "pv.pt")), 0);
  EXPECT_EQ(run_python(dir, kCheckPack, {dir / "x_bf16.pt", dir / "pv.pt", "0.92", "64"}), 0);
}

TEST(Int2Cli, UnpackDequantisesAndUndoesTheRotation) {
  TempDir dir;
  write_rows(dir);
  ASSERT_EQ(run_command(shell_quote(OSCAR_CALIBRATE_BIN) + " -q --method hadamard --num-layers 1 --head-dim 64 --out " +
                        shell_quote(dir / "rot")), 0);
  const std::string rotation = dir / "rot/k_rotation_hadamard.pt";
  ASSERT_EQ(oscar_int2("pack --in " + shell_quote(dir / "x.pt") + " --rotation " + shell_quote(rotation) +
                       " --out " + shell_quote(dir / "p.pt")), 0);
  ASSERT_EQ(oscar_int2("unpack --in " + shell_quote(dir / "p.pt") + " --out " + shell_quote(dir / "rotated.pt")), 0);
  ASSERT_EQ(oscar_int2("unpack --in " + shell_quote(dir / "p.pt") + " --rotation " + shell_quote(rotation) + " --out " +
                       shell_quote(dir / "back.pt")), 0);
  EXPECT_EQ(run_python(dir, R"(
import sys, torch
x, p = torch.load(sys.argv[1]), torch.load(sys.argv[2], weights_only=True)
rotated, back = torch.load(sys.argv[3]), torch.load(sys.argv[4])
r = torch.load(sys.argv[5], weights_only=True)["layers"][0]["rotation"]
assert p["rotation"] == "hadamard", p["rotation"]
# unpack without a rotation gives (code - zero) * scale in the rotated basis
codes = torch.stack([(p["codes"] >> s) & 3 for s in (0, 2, 4, 6)], dim=2).reshape(50, 2, 64)
expect = (codes.float() - p["zeros"]) * p["scales"]
assert torch.equal(rotated, expect), (rotated - expect).abs().max()
# with the rotation: back = rotated @ R^T, and close to x (INT2 error only)
assert torch.allclose(back @ r, rotated, atol=1e-5), (back @ r - rotated).abs().max()
err = (back - x).norm() / x.norm()
assert err < 0.6, err
)", {dir / "x.pt", dir / "p.pt", dir / "rotated.pt", dir / "back.pt", rotation}), 0);
}

TEST(Int2Cli, BadInputExitsOneWithoutOutput) {
  TempDir dir;
  ASSERT_EQ(run_python(dir, "import sys, torch\nx = torch.zeros(4, 1, 8)\nx[1, 0, 2] = float('inf')\ntorch.save(x, sys.argv[1])\n",
                       {dir / "inf.pt"}), 0);
  EXPECT_EQ(oscar_int2("pack --in " + shell_quote(dir / "inf.pt") + " --out " + shell_quote(dir / "o.pt") + " 2>/dev/null"), 1);
  EXPECT_FALSE(fs::exists(dir / "o.pt"));
  EXPECT_EQ(oscar_int2("pack --in " + shell_quote(dir / "missing.pt") + " --out " + shell_quote(dir / "o.pt") + " 2>/dev/null"), 1);
  EXPECT_EQ(oscar_int2("pack --in x.pt 2>/dev/null"), 2);  // --out missing: usage
}

TEST(Int2Cli, BitsTableShowsThePublishedFigure) {
  TempDir dir;
  ASSERT_EQ(oscar_int2("bits --context 131072 > " + shell_quote(dir / "bits.txt")), 0);
  const auto text = oscar::test::read_bytes(dir / "bits.txt");
  const std::string table(text.begin(), text.end());
  EXPECT_NE(table.find("| 131072 | 2.53 | 2.28 |"), std::string::npos) << table;
}
