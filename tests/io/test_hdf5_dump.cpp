// HDF5 dumps: SGLang -> HDF5 -> SGLang round trips, h5py compatibility, float16 rounding and overflow,
// temporary-file hygiene, and malformed files turning into one-line InputErrors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "core/version.h"
#include "io/activation_dump.h"
#include "io/dump_convert.h"
#include "io/hdf5_dump.h"
#include "io_test_support.h"

namespace oscar::io {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

constexpr Projection kProjections[] = {Projection::kQuery, Projection::kKey, Projection::kValue};

DumpOpenOptions with_chunk0() {
  DumpOpenOptions options;
  options.include_chunk0 = true;
  return options;
}

void expect_input_error(const std::function<void()>& action, const std::vector<std::string>& fragments) {
  try {
    action();
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    for (const std::string& fragment : fragments) EXPECT_NE(message.find(fragment), std::string::npos) << message;
  }
}

void expect_open_error(const std::string& path, const std::vector<std::string>& fragments) {
  expect_input_error([&] { open_activation_dump(path, {}); }, fragments);
}

/// Every chunk of every layer: same ids, token counts, seq_lens, and bit-identical tensors.
void expect_same_dump(const ActivationDump& expected, const ActivationDump& actual) {
  ASSERT_EQ(actual.layer_ids(), expected.layer_ids());
  EXPECT_EQ(actual.geometry().num_q_heads, expected.geometry().num_q_heads);
  EXPECT_EQ(actual.geometry().num_kv_heads, expected.geometry().num_kv_heads);
  EXPECT_EQ(actual.geometry().head_dim, expected.geometry().head_dim);
  for (int layer_id : expected.layer_ids()) {
    ASSERT_EQ(actual.chunk_ids(layer_id), expected.chunk_ids(layer_id));
    for (int chunk_id : expected.chunk_ids(layer_id)) {
      EXPECT_EQ(actual.chunk_tokens(layer_id, chunk_id), expected.chunk_tokens(layer_id, chunk_id));
      EXPECT_EQ(actual.seq_lens(layer_id, chunk_id), expected.seq_lens(layer_id, chunk_id));
      for (Projection projection : kProjections) {
        const HostTensor a = actual.read(layer_id, chunk_id, projection);
        const HostTensor e = expected.read(layer_id, chunk_id, projection);
        EXPECT_EQ(a.dtype, e.dtype);
        EXPECT_EQ(a.shape, e.shape);
        EXPECT_TRUE(a.bytes == e.bytes) << "layer " << layer_id << " chunk " << chunk_id << " "
                                        << projection_name(projection);
      }
    }
  }
}

HostTensor filled_tensor(DType dtype, std::vector<std::int64_t> shape, float value) {
  HostTensor tensor;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.bytes.resize(tensor.nbytes());
  for (std::int64_t i = 0; i < tensor.numel(); ++i) {
    if (dtype == DType::kFloat32) {
      std::memcpy(tensor.bytes.data() + 4 * i, &value, 4);
    } else {
      const std::uint16_t bits = dtype == DType::kBFloat16 ? float_to_bfloat16(value) : float_to_float16(value);
      std::memcpy(tensor.bytes.data() + 2 * i, &bits, 2);
    }
  }
  return tensor;
}

Hdf5DumpMetadata small_metadata(int num_layers) {
  Hdf5DumpMetadata metadata;
  metadata.model = "synthetic";
  metadata.num_layers = num_layers;
  metadata.geometry = DumpGeometry{4, 2, 8};
  metadata.source_dtype = "bfloat16";
  return metadata;
}

TEST(Hdf5Dump, Float16RoundTripThroughHdf5AndBackIsExact) {
  TempDir scratch;
  const std::string dump = scratch / "dump";
  const std::string h5 = scratch / "dump.h5";
  const std::string back = scratch / "back";
  test::make_synthetic_dump(dump, "--chunks 11 --dtype float16");

  std::size_t calls = 0, reported_total = 0;
  convert_dump(dump, h5, {}, [&](const ConvertProgress& progress) {
    ++calls;
    EXPECT_EQ(progress.chunks_done, calls);
    reported_total = progress.chunks_total;
  });
  EXPECT_EQ(calls, 3u * 12u);  // chunk 0 is carried along
  EXPECT_EQ(reported_total, 3u * 12u);
  EXPECT_FALSE(fs::exists(h5 + ".tmp"));

  const auto source = open_activation_dump(dump, with_chunk0());
  const auto stored = open_activation_dump(h5, with_chunk0());
  EXPECT_NE(dynamic_cast<Hdf5Dump*>(stored.get()), nullptr);
  EXPECT_EQ(stored->source_dtype(), "float16");
  EXPECT_EQ(stored->chunk_ids(0).front(), 0);
  expect_same_dump(*source, *stored);
  // Opened the default way, the HDF5 dump skips the warm-up chunk like the SGLang one.
  EXPECT_EQ(open_activation_dump(h5, {})->chunk_ids(2), open_activation_dump(dump, {})->chunk_ids(2));

  convert_dump(h5, back);
  EXPECT_FALSE(fs::exists(back + ".tmp"));
  const auto returned = open_activation_dump(back, with_chunk0());
  expect_same_dump(*source, *returned);
}

TEST(Hdf5Dump, Bfloat16RoundsToNearestFloat16AndKeepsSourceDtype) {
  TempDir scratch;
  const std::string dump = scratch / "dump";
  const std::string h5 = scratch / "dump.hdf5";
  test::make_synthetic_dump(dump, "--chunks 2 --layers 2 --seed 7");
  convert_dump(dump, h5);

  const auto source = open_activation_dump(dump, with_chunk0());
  const auto stored = open_activation_dump(h5, with_chunk0());
  EXPECT_EQ(stored->source_dtype(), "bfloat16");
  for (int layer_id : source->layer_ids()) {
    for (int chunk_id : source->chunk_ids(layer_id)) {
      for (Projection projection : kProjections) {
        const HostTensor original = source->read(layer_id, chunk_id, projection);
        const HostTensor half = stored->read(layer_id, chunk_id, projection);
        ASSERT_EQ(half.dtype, DType::kFloat16);
        ASSERT_EQ(half.shape, original.shape);
        std::int64_t mismatches = 0;
        for (std::int64_t i = 0; i < original.numel(); ++i) {
          std::uint16_t bits;
          std::memcpy(&bits, half.bytes.data() + 2 * i, 2);
          if (bits != float_to_float16(float(original.element_as_double(i)))) ++mismatches;
        }
        EXPECT_EQ(mismatches, 0);
      }
    }
  }
}

TEST(Hdf5Dump, H5pyReadsOurFile) {
  TempDir scratch;
  const std::string dump = scratch / "dump";
  const std::string h5 = scratch / "dump.h5";
  test::make_synthetic_dump(dump, "--chunks 3 --dtype bfloat16");
  convert_dump(dump, h5);

  // h5py sees float16 data, our attributes and the chunk index; values equal torch's own bf16 -> fp16 cast.
  const std::string check = R"PY(
import sys, h5py, numpy as np, torch
h5, dump, version = sys.argv[1:4]
f = h5py.File(h5, "r")
a = f.attrs
assert a["format"] == "oscar-activation-dump", a["format"]
assert int(a["format_version"]) == 1
assert int(a["num_layers"]) == 3 and int(a["num_q_heads"]) == 8 and int(a["num_kv_heads"]) == 2
assert int(a["head_dim"]) == 16
assert a["tool_version"] == version and a["source_dtype"] == "bfloat16" and a["model"] == ""
assert list(a["token_count"]) == [6 + 53 + 56 + 59] * 3, a["token_count"]
for layer in range(3):
    g = f[f"layer_{layer}"]
    heads = {"q": 8, "k": 2, "v": 2}
    for p in "qkv":
        assert g[p].dtype == np.float16, g[p].dtype
        assert g[p].shape == (174, heads[p], 16), g[p].shape
    ids = list(g["chunk_ids"][:])
    off = list(g["chunk_offsets"][:])
    assert ids == [0, 1, 2, 3], ids
    assert off == [0, 6, 59, 115, 174], off
    so = list(g["seq_lens_offsets"][:])
    for i, c in enumerate(ids):
        for p in "qkv":
            expected = torch.load(f"{dump}/layer_{layer}/{p}/{c}.pt").to(torch.float16).numpy()
            got = g[p][off[i]:off[i + 1]]
            assert np.array_equal(got.view(np.uint16), expected.view(np.uint16)), (layer, c, p)
        seq = torch.load(f"{dump}/layer_{layer}/seq_lens/{c}.pt").numpy()
        assert np.array_equal(g["seq_lens"][so[i]:so[i + 1]], seq), (layer, c)
print("h5py check ok")
)PY";
  EXPECT_EQ(test::run_python(scratch, check, {h5, dump, kVersion}), 0);
}

TEST(Hdf5Dump, NanIsPassedOn) {
  TempDir scratch;
  const std::string dump = scratch / "dump";
  const std::string h5 = scratch / "dump.h5";
  test::make_synthetic_dump(dump, "--chunks 2 --nan 1:2");
  convert_dump(dump, h5);
  EXPECT_TRUE(std::isnan(open_activation_dump(h5, {})->read(1, 2, Projection::kKey).element_as_double(0)));
}

TEST(Hdf5DumpWriter, Float16OverflowNamesLayerAndChunk) {
  TempDir scratch;
  const std::string h5 = scratch / "overflow.h5";
  Hdf5DumpWriter writer(h5, small_metadata(2));
  const HostTensor q = filled_tensor(DType::kBFloat16, {5, 4, 8}, 1.0f);
  const HostTensor kv = filled_tensor(DType::kBFloat16, {5, 2, 8}, 1.0f);
  // The largest float16 is fine, from any source type.
  writer.append_chunk(1, 1, filled_tensor(DType::kFloat32, {5, 4, 8}, 65504.0f), kv, kv, {});
  expect_input_error([&] { writer.append_chunk(1, 2, q, filled_tensor(DType::kBFloat16, {5, 2, 8}, 1e5f), kv, {2, 3}); },
                     {"layer 1 chunk 2", " k", "overflows float16"});
  expect_input_error([&] { writer.append_chunk(0, 4, q, kv, filled_tensor(DType::kFloat32, {5, 2, 8}, -65505.0f), {}); },
                     {"layer 0 chunk 4", " v", "overflows float16"});
}

TEST(Hdf5DumpWriter, ConversionOfAnOverflowingDumpLeavesNothingBehind) {
  TempDir scratch;
  const std::string dump = scratch / "dump";
  const std::string h5 = scratch / "dump.h5";
  test::make_synthetic_dump(dump, "--chunks 2 --dtype float32");
  ASSERT_EQ(test::run_python(scratch,
                             "import sys, torch\n"
                             "t = torch.load(sys.argv[1]); t[3, 1, 2] = 7e4; torch.save(t, sys.argv[1])\n",
                             {dump + "/layer_1/q/2.pt"}),
            0);
  expect_input_error([&] { convert_dump(dump, h5); }, {"layer 1 chunk 2", "q", "70000"});
  EXPECT_FALSE(fs::exists(h5));
  EXPECT_FALSE(fs::exists(h5 + ".tmp"));
}

TEST(Hdf5DumpWriter, WithoutFinishRemovesTheTemporaryFile) {
  TempDir scratch;
  const std::string h5 = scratch / "abandoned.h5";
  {
    Hdf5DumpWriter writer(h5, small_metadata(1));
    writer.append_chunk(0, 1, filled_tensor(DType::kFloat16, {3, 4, 8}, 0.5f),
                        filled_tensor(DType::kFloat16, {3, 2, 8}, 0.5f),
                        filled_tensor(DType::kFloat16, {3, 2, 8}, 0.5f), {3});
    EXPECT_TRUE(fs::exists(h5 + ".tmp"));
  }
  EXPECT_FALSE(fs::exists(h5 + ".tmp"));
  EXPECT_FALSE(fs::exists(h5));
}

TEST(Hdf5DumpWriter, WritesWhatTheReaderReturns) {
  TempDir scratch;
  const std::string h5 = scratch / "small.h5";
  Hdf5DumpWriter writer(h5, small_metadata(1));
  writer.append_chunk(0, 0, filled_tensor(DType::kFloat16, {2, 4, 8}, 0.25f),
                      filled_tensor(DType::kFloat16, {2, 2, 8}, 0.5f), filled_tensor(DType::kFloat16, {2, 2, 8}, 1.0f),
                      {});
  writer.append_chunk(0, 7, filled_tensor(DType::kFloat32, {3, 4, 8}, 2.0f),
                      filled_tensor(DType::kBFloat16, {3, 2, 8}, -3.0f),
                      filled_tensor(DType::kFloat32, {3, 2, 8}, 0.1f), {1, 2});
  expect_input_error([&] { writer.append_chunk(0, 7, filled_tensor(DType::kFloat16, {1, 4, 8}, 0), {}, {}, {}); },
                     {"ascend"});
  expect_input_error([&] {
    writer.append_chunk(0, 8, filled_tensor(DType::kFloat16, {1, 3, 8}, 0), filled_tensor(DType::kFloat16, {1, 2, 8}, 0),
                        filled_tensor(DType::kFloat16, {1, 2, 8}, 0), {});
  }, {"layer 0 chunk 8", "q has shape [1, 3, 8], expected [1, 4, 8]"});
  writer.finish();

  const auto stored = open_activation_dump(h5, with_chunk0());
  EXPECT_EQ(stored->model_name(), "synthetic");
  EXPECT_EQ(stored->chunk_ids(0), (std::vector<int>{0, 7}));
  EXPECT_TRUE(stored->seq_lens(0, 0).empty());
  EXPECT_EQ(stored->seq_lens(0, 7), (std::vector<std::int32_t>{1, 2}));
  EXPECT_EQ(stored->read(0, 0, Projection::kValue).element_as_double(31), 1.0);
  EXPECT_EQ(stored->read(0, 7, Projection::kQuery).element_as_double(95), 2.0);
  EXPECT_EQ(stored->read(0, 7, Projection::kKey).element_as_double(0), -3.0);
  EXPECT_EQ(stored->read(0, 7, Projection::kValue).element_as_double(47), double(float16_to_float(float_to_float16(0.1f))));

  // An SGLang copy of a dump with a chunk lacking seq_lens reads back the same.
  const std::string back = scratch / "back";
  convert_dump(*stored, back);
  expect_same_dump(*stored, *open_activation_dump(back, with_chunk0()));
}

TEST(DumpConvert, RefusesAnExistingDestination) {
  TempDir scratch;
  const std::string dump = scratch / "dump";
  test::make_synthetic_dump(dump, "--chunks 1 --layers 1");
  test::write_text_file(scratch / "taken.h5", "x");
  fs::create_directories(scratch / "taken_dir");
  EXPECT_THROW(convert_dump(dump, scratch / "taken.h5"), UsageError);
  EXPECT_THROW(convert_dump(dump, scratch / "taken_dir"), UsageError);
  EXPECT_THROW(convert_dump(dump, dump), UsageError);
}

// ---- malformed HDF5 files ------------------------------------------------------------------------------

class Hdf5DumpErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    test::make_synthetic_dump(scratch_ / "dump", "--chunks 2");
    convert_dump(scratch_ / "dump", good_);
  }
  /// A copy of the good file changed by a python snippet working on h5py.File `f`.
  std::string damaged_copy(const std::string& name, const std::string& change) {
    const std::string copy = scratch_ / name;
    fs::copy_file(good_, copy);
    EXPECT_EQ(test::run_python(scratch_, "import sys, h5py, numpy as np\nf = h5py.File(sys.argv[1], 'r+')\n" +
                                             change + "\nf.close()\n",
                               {copy}),
              0);
    return copy;
  }

  TempDir scratch_;
  const std::string good_ = scratch_ / "good.h5";
};

TEST_F(Hdf5DumpErrors, GarbageFile) {
  test::write_text_file(scratch_ / "garbage.h5", "definitely not HDF5");
  expect_open_error(scratch_ / "garbage.h5", {scratch_ / "garbage.h5", "not an HDF5 file"});
  expect_open_error(scratch_ / "missing.h5", {scratch_ / "missing.h5", "no such file"});
}

TEST_F(Hdf5DumpErrors, TruncatedFile) {
  const std::string cut = scratch_ / "cut.h5";
  fs::copy_file(good_, cut);
  fs::resize_file(cut, fs::file_size(cut) / 2);
  // Depending on where the cut falls, open or the first read notices; either way a one-line InputError.
  expect_input_error([&] {
    const auto dump = open_activation_dump(cut, {});
    for (int layer_id : dump->layer_ids()) {
      for (int chunk_id : dump->chunk_ids(layer_id)) {
        for (Projection projection : kProjections) dump->read(layer_id, chunk_id, projection);
      }
    }
  }, {cut});
}

TEST_F(Hdf5DumpErrors, MissingDataset) {
  expect_open_error(damaged_copy("no_k.h5", "del f['layer_1/k']"), {"/layer_1/k", "missing dataset"});
}

TEST_F(Hdf5DumpErrors, MissingLayerGroup) {
  expect_open_error(damaged_copy("no_layer.h5", "del f['layer_2']"), {"missing group /layer_2"});
}

TEST_F(Hdf5DumpErrors, WrongFormatAttribute) {
  const std::string path = damaged_copy("format.h5", "f.attrs['format'] = 'something-else'");
  expect_open_error(path, {path, "something-else"});
  expect_open_error(damaged_copy("version.h5", "f.attrs['format_version'] = np.int32(2)"), {"format_version 2"});
  expect_open_error(damaged_copy("no_attr.h5", "del f.attrs['head_dim']"), {"'head_dim'"});
}

TEST_F(Hdf5DumpErrors, ShapeDisagreesWithAttributes) {
  const std::string path = damaged_copy("heads.h5", "del f['layer_0/v']\nf['layer_0/v'] = np.zeros((115, 3, 16), np.float16)");
  expect_open_error(path, {path, "/layer_0/v", "shape"});
}

TEST_F(Hdf5DumpErrors, Float32DataIsRefused) {
  const std::string path = damaged_copy("f32.h5", "q = f['layer_0/q'][:].astype(np.float32)\ndel f['layer_0/q']\n"
                                                  "f['layer_0/q'] = q");
  expect_open_error(path, {"/layer_0/q", "float16"});
}

TEST_F(Hdf5DumpErrors, BadChunkIndex) {
  expect_open_error(damaged_copy("offsets.h5", "f['layer_1/chunk_offsets'][1] = 500"),
                    {"/layer_1/chunk_offsets", "offsets"});
  expect_open_error(damaged_copy("seq.h5", "f['layer_0/seq_lens'][0] = 1"), {"/layer_0/seq_lens", "sum to"});
}

}  // namespace
}  // namespace oscar::io
