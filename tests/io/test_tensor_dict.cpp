// Flat tensor dicts: round trip, and Python reads ours with torch.load(weights_only=True).
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "io/tensor_dict.h"
#include "io_test_support.h"

using namespace oscar;
using namespace oscar::io;

namespace {

HostTensor make_tensor(DType dtype, std::vector<std::int64_t> shape, const void* data) {
  HostTensor tensor;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.bytes.resize(tensor.nbytes());
  std::memcpy(tensor.bytes.data(), data, tensor.bytes.size());
  return tensor;
}

TensorDict sample_dict() {
  const std::uint8_t codes[6] = {0, 1, 2, 3, 255, 228};
  const float scales[2] = {0.5f, -1.25f};
  TensorDict dict;
  dict.integers = {{"head_dim", 8}};
  dict.reals = {{"clip_ratio", 0.96}};
  dict.strings = {{"kind", "k"}};
  dict.tensors = {{"codes", make_tensor(DType::kUInt8, {3, 2}, codes)}, {"scales", make_tensor(DType::kFloat32, {2}, scales)}};
  return dict;
}

}  // namespace

TEST(TensorDict, RoundTrips) {
  test::TempDir dir;
  write_tensor_dict(dir / "pack.pt", sample_dict());
  const TensorDict back = read_tensor_dict(dir / "pack.pt");
  EXPECT_EQ(back.integer("head_dim", "t"), 8);
  EXPECT_DOUBLE_EQ(back.real("clip_ratio", "t"), 0.96);
  EXPECT_EQ(back.string("kind", "t"), "k");
  const HostTensor& codes = back.tensor("codes", "t");
  EXPECT_EQ(codes.dtype, DType::kUInt8);
  EXPECT_EQ(codes.shape, (std::vector<std::int64_t>{3, 2}));
  EXPECT_EQ(codes.bytes, sample_dict().tensors[0].second.bytes);
  EXPECT_THROW(back.tensor("zeros", "pack.pt"), InputError);
}

TEST(TensorDict, PythonReadsItWithWeightsOnly) {
  test::TempDir dir;
  write_tensor_dict(dir / "pack.pt", sample_dict());
  const int status = test::run_python(dir, R"(
import sys, torch
d = torch.load(sys.argv[1], weights_only=True)
assert list(d.keys()) == ["head_dim", "kind", "clip_ratio", "codes", "scales"], list(d.keys())
assert d["head_dim"] == 8 and d["kind"] == "k"
assert d["clip_ratio"].dtype == torch.float64 and d["clip_ratio"].shape == () and d["clip_ratio"].item() == 0.96
assert d["codes"].dtype == torch.uint8 and d["codes"].tolist() == [[0, 1], [2, 3], [255, 228]], d["codes"]
assert d["scales"].dtype == torch.float32 and d["scales"].tolist() == [0.5, -1.25]
)", {dir / "pack.pt"});
  EXPECT_EQ(status, 0);
}

TEST(TensorDict, ReadsWhatPythonWrites) {
  test::TempDir dir;
  ASSERT_EQ(test::run_python(dir, R"(
import sys, torch
torch.save({"codes": torch.tensor([[1, 2], [3, 4]], dtype=torch.uint8), "n": 3, "name": "v"}, sys.argv[1])
)", {dir / "py.pt"}), 0);
  const TensorDict dict = read_tensor_dict(dir / "py.pt");
  EXPECT_EQ(dict.tensor("codes", "py").bytes, (std::vector<std::uint8_t>{1, 2, 3, 4}));
  EXPECT_EQ(dict.integer("n", "py"), 3);
  EXPECT_EQ(dict.string("name", "py"), "v");
}
