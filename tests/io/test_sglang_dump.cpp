// SGLang dump directories: geometry, chunk order, values against what Python wrote, and every malformed
// case turning into one InputError that names the offending file.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "io/activation_dump.h"
#include "io/sglang_dump.h"
#include "io_test_support.h"

namespace oscar::io {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

/// Expects open_activation_dump(path) to throw InputError whose message contains every fragment.
void expect_open_error(const std::string& path, const std::vector<std::string>& fragments,
                       DumpOpenOptions options = {}) {
  try {
    open_activation_dump(path, options);
    ADD_FAILURE() << "opening " << path << " did not throw";
  } catch (const InputError& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    for (const std::string& fragment : fragments) EXPECT_NE(message.find(fragment), std::string::npos) << message;
  }
}

/// Saves a tensor with torch (python expression `value`) to path, replacing whatever is there.
void torch_save(const TempDir& scratch, const std::string& path, const std::string& value) {
  ASSERT_EQ(test::run_python(scratch, "import sys, torch\ntorch.save(" + value + ", sys.argv[1])\n", {path}), 0);
}

TEST(SglangDump, GeometryLayersAndNumericChunkOrder) {
  TempDir scratch;
  const std::string dump = scratch / "dump";
  test::make_synthetic_dump(dump, "--chunks 12");
  const auto opened = open_activation_dump(dump, {});
  EXPECT_NE(dynamic_cast<SglangDump*>(opened.get()), nullptr);
  const ActivationDump& source = *opened;

  EXPECT_EQ(source.path(), dump);
  EXPECT_EQ(source.layer_ids(), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(source.geometry().num_q_heads, 8);
  EXPECT_EQ(source.geometry().num_kv_heads, 2);
  EXPECT_EQ(source.geometry().head_dim, 16);
  EXPECT_EQ(source.source_dtype(), "bfloat16");
  const std::vector<int> expected_chunks{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};  // 2 before 10: numeric order
  for (int layer_id : source.layer_ids()) {
    EXPECT_EQ(source.chunk_ids(layer_id), expected_chunks);
    for (int chunk_id : expected_chunks) {
      const std::int64_t tokens = 50 + 3 * chunk_id;
      EXPECT_EQ(source.chunk_tokens(layer_id, chunk_id), tokens);
      EXPECT_EQ(source.seq_lens(layer_id, chunk_id), (std::vector<std::int32_t>{std::int32_t(tokens / 2),
                                                                                 std::int32_t(tokens - tokens / 2)}));
    }
  }
  const HostTensor k = source.read(2, 10, Projection::kKey);
  EXPECT_EQ(k.shape, (std::vector<std::int64_t>{80, 2, 16}));
  EXPECT_EQ(k.dtype, DType::kBFloat16);
}

TEST(SglangDump, WarmUpChunkZeroIsSkippedUnlessIncluded) {
  TempDir scratch;
  const std::string dump = scratch / "dump";
  test::make_synthetic_dump(dump, "--chunks 3 --layers 2");
  EXPECT_EQ(open_activation_dump(dump, {})->chunk_ids(1), (std::vector<int>{1, 2, 3}));

  DumpOpenOptions with_chunk0;
  with_chunk0.include_chunk0 = true;
  const auto opened = open_activation_dump(dump, with_chunk0);
  EXPECT_EQ(opened->chunk_ids(1), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(opened->chunk_tokens(1, 0), 6);
  EXPECT_EQ(opened->read(1, 0, Projection::kQuery).shape, (std::vector<std::int64_t>{6, 8, 16}));
}

TEST(SglangDump, SkippedChunkZeroIsNotEvenValidated) {
  TempDir scratch;
  const std::string dump = scratch / "dump";
  test::make_synthetic_dump(dump, "--chunks 2 --truncate 0:0:q");
  EXPECT_NO_THROW(open_activation_dump(dump, {}));
  DumpOpenOptions with_chunk0;
  with_chunk0.include_chunk0 = true;
  expect_open_error(dump, {dump + "/layer_0/q/0.pt"}, with_chunk0);
}

class SglangDumpValues : public ::testing::TestWithParam<std::string> {};

TEST_P(SglangDumpValues, EqualWhatPythonSaved) {
  TempDir scratch;
  const std::string dump = scratch / "dump";
  const std::string reference_file = scratch / "reference.txt";
  test::make_synthetic_dump(dump, "--chunks 3 --dtype " + GetParam() + " --reference " + reference_file);
  DumpOpenOptions options;
  options.include_chunk0 = true;
  const auto source = open_activation_dump(dump, options);
  EXPECT_EQ(source->source_dtype(), GetParam());

  const std::vector<test::ReferenceTensor> reference = test::read_reference(reference_file);
  ASSERT_EQ(reference.size(), 3u * 4u * 3u);  // layers x chunks (with 0) x projections
  for (const test::ReferenceTensor& expected : reference) {
    const Projection projection = expected.projection == "q"   ? Projection::kQuery
                                  : expected.projection == "k" ? Projection::kKey
                                                               : Projection::kValue;
    const HostTensor tensor = source->read(expected.layer, expected.chunk, projection);
    SCOPED_TRACE("layer " + std::to_string(expected.layer) + " chunk " + std::to_string(expected.chunk) + " " +
                 expected.projection);
    EXPECT_EQ(dtype_name(tensor.dtype), GetParam());
    EXPECT_EQ(tensor.shape, expected.shape);
    double sum = 0, abs_sum = 0;
    for (std::int64_t i = 0; i < tensor.numel(); ++i) {
      sum += tensor.element_as_double(i);
      abs_sum += std::fabs(tensor.element_as_double(i));
    }
    // Same float64 addends in a different order: equal up to rounding of the sum.
    EXPECT_NEAR(sum, expected.sum, 1e-12 * expected.abs_sum);
    EXPECT_NEAR(abs_sum, expected.abs_sum, 1e-12 * expected.abs_sum);
    for (std::size_t i = 0; i < expected.first_values.size(); ++i) {
      EXPECT_EQ(tensor.element_as_double(std::int64_t(i)), expected.first_values[i]);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, SglangDumpValues, ::testing::Values("bfloat16", "float16", "float32"));

TEST(SglangDump, FlatTensorsNeedHeadDimHintAndReadAsThreeD) {
  TempDir scratch;
  const std::string flat = scratch / "flat";
  const std::string shaped = scratch / "shaped";
  test::make_synthetic_dump(flat, "--chunks 2 --seed 3 --flat");
  test::make_synthetic_dump(shaped, "--chunks 2 --seed 3");
  expect_open_error(flat, {flat + "/layer_0/q/1.pt", "head_dim_hint"});

  DumpOpenOptions options;
  options.head_dim_hint = 16;
  const auto flat_dump = open_activation_dump(flat, options);
  const auto shaped_dump = open_activation_dump(shaped, {});
  EXPECT_EQ(flat_dump->geometry().num_q_heads, 8);
  EXPECT_EQ(flat_dump->geometry().num_kv_heads, 2);
  for (Projection projection : {Projection::kQuery, Projection::kKey, Projection::kValue}) {
    const HostTensor from_flat = flat_dump->read(1, 2, projection);
    const HostTensor from_shaped = shaped_dump->read(1, 2, projection);
    EXPECT_EQ(from_flat.shape, from_shaped.shape);
    EXPECT_EQ(from_flat.bytes, from_shaped.bytes);
  }

  options.head_dim_hint = 5;  // 16 * heads is not a multiple of 5
  expect_open_error(flat, {flat + "/layer_0/q/1.pt", "head_dim 5"}, options);
  options.head_dim_hint = 8;  // a hint must agree with 3-D data too
  expect_open_error(shaped, {shaped + "/layer_0/q/1.pt", "head_dim 16 disagrees with head_dim_hint 8"}, options);
}

TEST(SglangDump, NanIsPassedOn) {
  TempDir scratch;
  const std::string dump = scratch / "dump";
  test::make_synthetic_dump(dump, "--chunks 2 --nan 1:2");
  const HostTensor k = open_activation_dump(dump, {})->read(1, 2, Projection::kKey);
  EXPECT_TRUE(std::isnan(k.element_as_double(0)));
}

// ---- malformed dumps: one InputError line naming the file ----------------------------------------------

/// Each case gets a scratch directory of its own, usually to make a good synthetic dump in and then damage it.
class SglangDumpErrors : public ::testing::Test {
 protected:
  /// make_synthetic_dump(<scratch>/dump, options); returns the dump's path.
  std::string make_dump(const std::string& options) const {
    const std::string dump = scratch_ / "dump";
    test::make_synthetic_dump(dump, options);
    return dump;
  }

  TempDir scratch_;
};

TEST_F(SglangDumpErrors, MissingLayer) {
  const std::string dump = make_dump("--layers 4 --chunks 2 --drop-layer 2");
  expect_open_error(dump, {dump + ": missing layer_2"});
}

TEST_F(SglangDumpErrors, HeadCountMismatchNamesBothFiles) {
  const std::string dump = make_dump("--chunks 4 --bad-heads 2:3");
  expect_open_error(dump, {dump + "/layer_2/k/3.pt: shape [59, 3, 16] disagrees with [53, 2, 16] of " + dump +
                           "/layer_0/k/1.pt"});
}

TEST_F(SglangDumpErrors, TruncatedChunk) {
  const std::string dump = make_dump("--chunks 3 --truncate 1:2:v");
  expect_open_error(dump, {dump + "/layer_1/v/2.pt"});
}

TEST_F(SglangDumpErrors, GarbageFile) {
  const std::string dump = make_dump("--chunks 3");
  test::write_text_file(dump + "/layer_0/q/2.pt", "this is not a torch.save file\n");
  expect_open_error(dump, {dump + "/layer_0/q/2.pt"});
}

TEST_F(SglangDumpErrors, MissingKDirectory) {
  const std::string dump = make_dump("--chunks 2");
  fs::remove_all(dump + "/layer_1/k");
  expect_open_error(dump, {dump + "/layer_1/k", "missing"});
}

TEST_F(SglangDumpErrors, ChunkMissingForOneProjection) {
  const std::string dump = make_dump("--chunks 4");
  fs::remove(dump + "/layer_2/v/3.pt");
  expect_open_error(dump, {dump + "/layer_2/v/3.pt: missing"});
}

TEST_F(SglangDumpErrors, SeqLensSumMismatch) {
  const std::string dump = make_dump("--chunks 3");
  torch_save(scratch_, dump + "/layer_0/seq_lens/2.pt", "torch.tensor([1, 2], dtype=torch.int32)");
  expect_open_error(dump, {dump + "/layer_0/seq_lens/2.pt", "sum to 3", "56 tokens"});
}

TEST_F(SglangDumpErrors, TokenCountDiffersBetweenProjections) {
  const std::string dump = make_dump("--chunks 3");
  torch_save(scratch_, dump + "/layer_1/k/2.pt", "torch.zeros(55, 2, 16, dtype=torch.bfloat16)");
  expect_open_error(dump, {dump + "/layer_1/k/2.pt", "55 tokens"});
}

TEST_F(SglangDumpErrors, QueryHeadsNotAMultipleOfKvHeads) {
  const std::string dump = make_dump("--chunks 1 --layers 1 --q-heads 4 --kv-heads 4");
  torch_save(scratch_, dump + "/layer_0/q/1.pt", "torch.zeros(53, 6, 16, dtype=torch.bfloat16)");
  expect_open_error(dump, {dump + "/layer_0/q/1.pt", "not a multiple"});
}

TEST_F(SglangDumpErrors, DtypeMixedWithinDump) {
  const std::string dump = make_dump("--chunks 3");
  torch_save(scratch_, dump + "/layer_1/v/2.pt", "torch.zeros(56, 2, 16, dtype=torch.float16)");
  expect_open_error(dump, {dump + "/layer_1/v/2.pt", "float16", "bfloat16"});
}

TEST_F(SglangDumpErrors, StrayFileInChunkDirectory) {
  const std::string dump = make_dump("--chunks 2");
  test::write_text_file(dump + "/layer_0/q/notes.txt", "hello");
  expect_open_error(dump, {dump + "/layer_0/q/notes.txt"});
}

TEST_F(SglangDumpErrors, NotADump) {
  fs::create_directories(scratch_ / "empty");
  expect_open_error(scratch_ / "empty", {scratch_ / "empty", "no layer_"});
  expect_open_error(scratch_ / "nowhere", {scratch_ / "nowhere", "no such file"});
  test::write_text_file(scratch_ / "notes.txt", "hello");
  expect_open_error(scratch_ / "notes.txt", {scratch_ / "notes.txt", "not an activation dump"});
}

TEST_F(SglangDumpErrors, ReadRechecksFilesChangedAfterOpen) {
  const std::string dump = make_dump("--chunks 3");
  const auto source = open_activation_dump(dump, {});

  // A valid tensor of another shape (chunk 3 has more tokens than chunk 2).
  fs::copy_file(dump + "/layer_1/q/3.pt", dump + "/layer_1/q/2.pt", fs::copy_options::overwrite_existing);
  try {
    source->read(1, 2, Projection::kQuery);
    ADD_FAILURE() << "read of a replaced file did not throw";
  } catch (const InputError& error) {
    EXPECT_NE(std::string(error.what()).find(dump + "/layer_1/q/2.pt"), std::string::npos) << error.what();
  }

  // A file cut short.
  fs::resize_file(dump + "/layer_2/k/1.pt", fs::file_size(dump + "/layer_2/k/1.pt") / 2);
  try {
    source->read(2, 1, Projection::kKey);
    ADD_FAILURE() << "read of a truncated file did not throw";
  } catch (const InputError& error) {
    EXPECT_NE(std::string(error.what()).find(dump + "/layer_2/k/1.pt"), std::string::npos) << error.what();
  }
  EXPECT_NO_THROW(source->read(2, 1, Projection::kValue));
}

}  // namespace
}  // namespace oscar::io
