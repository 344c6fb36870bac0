// GGUF reader and writer: every metadata type round-trips, alignment, byte-exact rewriting of a real llama.cpp
// file, rejection of malformed files with one-line messages, and agreement with an independent reader (the npm
// package @huggingface/gguf, run with node by tests/js/read_gguf.mjs).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/gguf.h"
#include "gguf_test_support.h"
#include "io_test_support.h"

namespace oscar::io {
namespace {

namespace fs = std::filesystem;
using test::expect_input_error_with_prefix;
using test::expect_node_agrees;
using test::floats_of;
using test::gguf_npm_prefix;
using test::input_error_message;
using test::read_bytes;
using test::read_with_node;
using test::shell_quote;
using test::TempDir;
using test::write_bytes;
using Bytes = std::vector<std::uint8_t>;

const std::string kTinyStories =
    std::string(OSCAR_SHARED_DATA) + "/models/tinystories-656k/TinyStories-656K-Q8_0.gguf";
constexpr std::uint32_t kGgmlI8 = 24;

// ----- helpers -------------------------------------------------------------------------------------------------

Bytes f32_bytes(const std::vector<float>& values) {
  Bytes bytes(values.size() * 4);
  std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

float float_from_bits(std::uint32_t bits) {
  float v;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

/// Position of the first occurrence of `text` in `bytes` (a test failure when absent).
std::size_t find_text(const Bytes& bytes, const std::string& text) {
  const auto found = std::search(bytes.begin(), bytes.end(), text.begin(), text.end());
  EXPECT_NE(found, bytes.end()) << text;
  return std::size_t(found - bytes.begin());
}

void put_le(Bytes& bytes, std::size_t position, std::uint64_t value, std::size_t size) {
  for (std::size_t i = 0; i < size; ++i) bytes.at(position + i) = std::uint8_t(value >> (8 * i));
}

std::string with_bytes(const TempDir& dir, const std::string& name, const Bytes& bytes) {
  const std::string path = dir / name;
  write_bytes(path, bytes);
  return path;
}

/// Expects GgufReader(path) to fail with exactly "<path>: <problem>".
void expect_rejected(const std::string& path, const std::string& problem) {
  const std::string message = input_error_message([&] { GgufReader reader(path); });
  EXPECT_EQ(message, path + ": " + problem);
}

/// Expects GgufReader(path) to fail with a one-line message that starts with "<path>: " and contains `fragment`.
void expect_rejected_with(const std::string& path, const std::string& fragment) {
  expect_input_error_with_prefix([&] { GgufReader reader(path); }, path + ": ", fragment);
}

// The sample file of the rejection tests, default alignment 32:
//   general.name = "sample", sample.count = uint32 7, sample.list = int32 [1, 2, 3];
//   "first": F32 ne {3, 2} (24 bytes at data offset 0), "second": I8 ne {5} (5 bytes at data offset 32).
// Header 24 bytes, metadata to 137, tensor infos to 220, data section from 224, file 224 + 64 = 288 bytes.
Bytes sample_file(const TempDir& dir) {
  GgufWriter writer;
  writer.add_metadata("general.name", GgufValue::string("sample"));
  writer.add_metadata("sample.count", GgufValue::uint32(7));
  writer.add_metadata("sample.list", GgufValue::int32_array({1, 2, 3}));
  writer.add_tensor("first", gguf_format::kGgmlF32, {3, 2}, f32_bytes({1, 2, 3, 4, 5, 6}));
  writer.add_tensor("second", kGgmlI8, {5}, {1, 2, 3, 4, 5});
  const std::string path = dir / "sample.gguf";
  writer.write(path);
  return read_bytes(path);
}

/// Every metadata type, with edge values: extremes, -0.0, a NaN with a payload, empty and UTF-8 strings, empty
/// arrays, nested arrays (ragged, empty, three deep).
std::vector<GgufKeyValue> every_type_metadata() {
  using V = GgufValue;
  using T = GgufType;
  std::vector<GgufKeyValue> kv = {
      {"t.uint8", V::uint8(255)},
      {"t.int8", V::int8(-128)},
      {"t.uint16", V::uint16(65535)},
      {"t.int16", V::int16(-32768)},
      {"t.uint32", V::uint32(4294967295u)},
      {"t.int32", V::int32(std::numeric_limits<std::int32_t>::min())},
      {"t.float32", V::float32(0.1f)},
      {"t.float32.negative_zero", V::float32(-0.0f)},
      {"t.float32.nan_payload", V::float32(float_from_bits(0x7fc12345u))},
      {"t.bool.true", V::boolean(true)},
      {"t.bool.false", V::boolean(false)},
      {"t.string", V::string("hello")},
      {"t.string.empty", V::string("")},
      {"t.string.utf8", V::string("h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80")},
      {"t.string.nul", V::string(std::string("a\0b", 3))},
      {"t.uint64", V::uint64(std::numeric_limits<std::uint64_t>::max())},
      {"t.int64", V::int64(std::numeric_limits<std::int64_t>::min())},
      {"t.float64", V::float64(-1.0e300)},
      {"", V::string("the empty key")},
      {"t.array.uint8.empty", V::array(T::kUint8, {})},
      {"t.array.string.empty", V::string_array({})},
      {"t.array.string", V::string_array({"", "a", "\xc3\xa9t\xc3\xa9"})},
      {"t.array.float32", V::float32_array({1.5f, -2.25f, 3.0e-38f})},
      {"t.array.int32", V::int32_array({-1, 0, 1})},
      {"t.array.bool", V::array(T::kBool, {V::boolean(true), V::boolean(false)})},
      {"t.array.uint64", V::array(T::kUint64, {V::uint64(0), V::uint64(1ull << 63)})},
      {"t.array.int64", V::array(T::kInt64, {V::int64(-5)})},
      {"t.array.float64", V::array(T::kFloat64, {V::float64(2.5), V::float64(-0.0)})},
      {"t.array.uint8", V::array(T::kUint8, {V::uint8(0), V::uint8(200)})},
      {"t.array.int8", V::array(T::kInt8, {V::int8(-7)})},
      {"t.array.uint16", V::array(T::kUint16, {V::uint16(40000)})},
      {"t.array.int16", V::array(T::kInt16, {V::int16(-300)})},
      {"t.array.uint32", V::array(T::kUint32, {V::uint32(3000000000u)})},
      {"t.array.nested", V::array(T::kArray, {V::int32_array({1, 2, 3}), V::int32_array({}), V::int32_array({4})})},
      {"t.array.nested.empty", V::array(T::kArray, {})},
      {"t.array.nested3",
       V::array(T::kArray, {V::array(T::kArray, {V::string_array({"x", ""}), V::string_array({})}),
                            V::array(T::kArray, {})})},
  };
  return kv;
}

// ----- metadata and tensors round-trip -------------------------------------------------------------------------

TEST(Gguf, EveryMetadataTypeRoundTrips) {
  TempDir dir;
  const std::vector<GgufKeyValue> written = every_type_metadata();
  GgufWriter writer;
  for (const GgufKeyValue& kv : written) writer.add_metadata(kv.key, kv.value);
  const std::string path = dir / "types.gguf";
  writer.write(path);
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  const GgufReader reader(path);
  EXPECT_EQ(reader.version(), 3u);
  EXPECT_EQ(reader.alignment(), 32u);
  EXPECT_TRUE(reader.tensors().empty());
  ASSERT_EQ(reader.metadata().size(), written.size());
  for (std::size_t i = 0; i < written.size(); ++i) {
    EXPECT_EQ(reader.metadata()[i].key, written[i].key) << i;  // file order
    EXPECT_TRUE(reader.metadata()[i].value == written[i].value) << written[i].key;
  }

  // The typed getters.
  EXPECT_EQ(reader.get_int64("t.uint8"), 255);
  EXPECT_EQ(reader.get_int64("t.int8"), -128);
  EXPECT_EQ(reader.get_int64("t.uint16"), 65535);
  EXPECT_EQ(reader.get_int64("t.int16"), -32768);
  EXPECT_EQ(reader.get_int64("t.uint32"), 4294967295LL);
  EXPECT_EQ(reader.get_int64("t.int32"), std::numeric_limits<std::int32_t>::min());
  EXPECT_EQ(reader.get_int64("t.int64"), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(reader.get_uint64("t.uint64"), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(reader.get_double("t.float32"), double(0.1f));
  EXPECT_TRUE(std::signbit(reader.get_double("t.float32.negative_zero")));
  EXPECT_TRUE(std::isnan(reader.get_double("t.float32.nan_payload")));
  EXPECT_EQ(reader.get_double("t.float64"), -1.0e300);
  EXPECT_EQ(reader.get_double("t.int16"), -32768.0);
  EXPECT_TRUE(reader.get_bool("t.bool.true"));
  EXPECT_FALSE(reader.get_bool("t.bool.false"));
  EXPECT_EQ(reader.get_string("t.string.utf8"), "h\xc3\xa9llo \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(reader.get_string("t.string.nul"), std::string("a\0b", 3));
  EXPECT_EQ(reader.get_string("t.string.empty"), "");
  EXPECT_EQ(reader.get_string(""), "the empty key");
  EXPECT_EQ(reader.get_string_array("t.array.string"), (std::vector<std::string>{"", "a", "\xc3\xa9t\xc3\xa9"}));
  EXPECT_TRUE(reader.get_string_array("t.array.string.empty").empty());
  EXPECT_EQ(reader.get_float_array("t.array.float32"), (std::vector<float>{1.5f, -2.25f, 3.0e-38f}));
  EXPECT_EQ(reader.get_float_array("t.array.float64"), (std::vector<float>{2.5f, -0.0f}));
  EXPECT_EQ(reader.get_int64_array("t.array.int32"), (std::vector<std::int64_t>{-1, 0, 1}));
  EXPECT_EQ(reader.get_int64_array("t.array.uint32"), (std::vector<std::int64_t>{3000000000LL}));
  EXPECT_TRUE(reader.get_int64_array("t.array.uint8.empty").empty());
  const GgufValue& nested = reader.value("t.array.nested");
  ASSERT_EQ(nested.elements.size(), 3u);
  EXPECT_EQ(nested.elements[0].as_int64_array("nested[0]"), (std::vector<std::int64_t>{1, 2, 3}));
  EXPECT_TRUE(nested.elements[1].elements.empty());
  EXPECT_EQ(reader.value("t.array.nested3").elements[0].elements[0].as_string_array("x"),
            (std::vector<std::string>{"x", ""}));

  // Writing what was read gives the same bytes.
  GgufWriter copy;
  for (const GgufKeyValue& kv : reader.metadata()) copy.add_metadata(kv.key, kv.value);
  copy.write(dir / "copy.gguf");
  EXPECT_EQ(read_bytes(dir / "copy.gguf"), read_bytes(path));
}

TEST(Gguf, GettersNameTheFileAndKey) {
  TempDir dir;
  GgufWriter writer;
  writer.add_metadata("k.uint32", GgufValue::uint32(3));
  writer.add_metadata("k.string", GgufValue::string("s"));
  writer.add_metadata("k.uint64", GgufValue::uint64(1ull << 63));
  writer.add_metadata("k.floats", GgufValue::float32_array({1}));
  writer.add_metadata("k.int8", GgufValue::int8(-1));
  const std::string path = dir / "getters.gguf";
  writer.write(path);
  const GgufReader reader(path);
  EXPECT_EQ(input_error_message([&] { reader.get_string("k.uint32"); }),
            path + ": metadata k.uint32 is not a string (it is uint32)");
  EXPECT_EQ(input_error_message([&] { reader.get_int64("k.string"); }),
            path + ": metadata k.string is not an integer (it is string)");
  EXPECT_EQ(input_error_message([&] { reader.get_double("k.string"); }),
            path + ": metadata k.string is not a number (it is string)");
  EXPECT_EQ(input_error_message([&] { reader.get_bool("k.uint32"); }),
            path + ": metadata k.uint32 is not a bool (it is uint32)");
  EXPECT_EQ(input_error_message([&] { reader.get_int64_array("k.floats"); }),
            path + ": metadata k.floats is not an array of integers (it is array of float32)");
  EXPECT_EQ(input_error_message([&] { reader.get_string_array("k.floats"); }),
            path + ": metadata k.floats is not an array of strings (it is array of float32)");
  EXPECT_EQ(input_error_message([&] { reader.get_float_array("k.string"); }),
            path + ": metadata k.string is not an array of floats (it is string)");
  EXPECT_EQ(input_error_message([&] { reader.get_int64("k.uint64"); }), path + ": metadata k.uint64 is out of range");
  EXPECT_EQ(input_error_message([&] { reader.get_uint64("k.int8"); }), path + ": metadata k.int8 is negative");
  EXPECT_EQ(input_error_message([&] { reader.value("k.absent"); }), path + ": missing metadata k.absent");
  EXPECT_EQ(reader.find("k.absent"), nullptr);
  EXPECT_EQ(reader.get_uint64("k.uint64"), 1ull << 63);
}

TEST(Gguf, TensorsAndDefaultAlignment) {
  TempDir dir;
  const Bytes bytes = sample_file(dir);
  const GgufReader reader(dir / "sample.gguf");
  EXPECT_EQ(reader.alignment(), 32u);
  EXPECT_EQ(reader.data_offset(), 224u);
  EXPECT_EQ(reader.file_size(), 288u);
  ASSERT_EQ(reader.tensors().size(), 2u);
  const GgufTensorInfo& first = reader.tensors()[0];
  EXPECT_EQ(first.name, "first");
  EXPECT_EQ(first.type, gguf_format::kGgmlF32);
  EXPECT_EQ(first.ne, (std::vector<std::uint64_t>{3, 2}));
  EXPECT_EQ(first.offset, 0u);
  EXPECT_EQ(first.byte_size, 24u);
  EXPECT_EQ(first.numel(), 6u);
  EXPECT_EQ(floats_of(reader.tensor_data(first)), (std::vector<float>{1, 2, 3, 4, 5, 6}));
  const GgufTensorInfo* second = reader.find_tensor("second");
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->offset, 32u);
  EXPECT_EQ(second->byte_size, 5u);
  const GgufBytes data = reader.tensor_data(*second);
  EXPECT_EQ(Bytes(data.data, data.data + data.size), (Bytes{1, 2, 3, 4, 5}));
  EXPECT_EQ(reader.find_tensor("third"), nullptr);
  // Padding is zero bytes: after the tensor infos, between the tensors and after the last one.
  for (std::size_t i = 220; i < 224; ++i) EXPECT_EQ(bytes[i], 0) << i;
  for (std::size_t i = 224 + 24; i < 224 + 32; ++i) EXPECT_EQ(bytes[i], 0) << i;
  for (std::size_t i = 224 + 37; i < 288; ++i) EXPECT_EQ(bytes[i], 0) << i;
}

TEST(Gguf, AlignmentFromMetadataIsHonoured) {
  TempDir dir;
  GgufWriter writer;
  writer.add_metadata("general.architecture", GgufValue::string("test"));
  writer.add_metadata(gguf_format::kAlignmentKey, GgufValue::uint32(64));
  writer.add_tensor("a", gguf_format::kGgmlF32, {3}, f32_bytes({1, 2, 3}));
  writer.add_tensor("b", kGgmlI8, {5, 1, 1}, {9, 8, 7, 6, 5});
  writer.add_tensor("c", gguf_format::kGgmlQ8_0, {32, 2}, Bytes(68, 0x11));
  writer.add_tensor("d", gguf_format::kGgmlF16, {}, {0x00, 0x3c});  // a scalar: no extents, one element
  writer.add_tensor("e", gguf_format::kGgmlF32, {0, 4}, {});          // no elements
  const std::string path = dir / "aligned.gguf";
  writer.write(path);
  writer.write(dir / "again.gguf");
  EXPECT_EQ(read_bytes(path), read_bytes(dir / "again.gguf"));  // deterministic

  const GgufReader reader(path);
  EXPECT_EQ(reader.alignment(), 64u);
  EXPECT_EQ(reader.data_offset() % 64, 0u);
  EXPECT_EQ(reader.file_size() % 64, 0u);
  const std::vector<std::uint64_t> offsets = {0, 64, 128, 256, 320};
  const std::vector<std::uint64_t> sizes = {12, 5, 68, 2, 0};
  ASSERT_EQ(reader.tensors().size(), 5u);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(reader.tensors()[i].offset, offsets[i]) << i;
    EXPECT_EQ(reader.tensors()[i].byte_size, sizes[i]) << i;
  }
  EXPECT_EQ(reader.file_size(), reader.data_offset() + 320);
  EXPECT_EQ(reader.tensors()[3].ne.size(), 0u);
  EXPECT_EQ(reader.tensors()[2].ne, (std::vector<std::uint64_t>{32, 2}));
  const GgufBytes c = reader.tensor_data(reader.tensors()[2]);
  EXPECT_EQ(Bytes(c.data, c.data + c.size), Bytes(68, 0x11));
}

TEST(Gguf, TensorSizesOfEveryKnownType) {
  struct Case { std::uint32_t type; std::uint64_t ne0; std::uint64_t bytes; };
  const Case cases[] = {{0, 2, 8},       {1, 2, 4},       {2, 32, 18},     {3, 32, 20},     {6, 32, 22},
                        {7, 32, 24},     {8, 64, 68},     {9, 32, 36},     {10, 256, 84},   {11, 256, 110},
                        {12, 256, 144},  {13, 256, 176},  {14, 512, 420},  {15, 256, 292},  {24, 3, 3},
                        {25, 3, 6},      {26, 3, 12},     {27, 3, 24},     {28, 3, 24},     {30, 3, 6}};
  for (const Case& c : cases) {
    EXPECT_EQ(ggml_tensor_bytes("t", c.type, {c.ne0, 3}), 3 * c.bytes) << ggml_type_name(c.type);
  }
  EXPECT_EQ(ggml_type_name(14), "Q6_K");
  EXPECT_EQ(ggml_type_name(16), "type 16");
  EXPECT_EQ(find_ggml_type(16), nullptr);
}

TEST(Gguf, WriterRejectsMistakes) {
  TempDir dir;
  GgufWriter writer;
  writer.add_metadata("k", GgufValue::uint8(1));
  EXPECT_THROW(writer.add_metadata("k", GgufValue::uint8(2)), std::invalid_argument);
  EXPECT_THROW(writer.add_metadata(gguf_format::kAlignmentKey, GgufValue::uint32(48)), std::invalid_argument);
  EXPECT_THROW(writer.add_metadata(gguf_format::kAlignmentKey, GgufValue::uint32(0)), std::invalid_argument);
  EXPECT_THROW(writer.add_metadata(gguf_format::kAlignmentKey, GgufValue::int32(64)), std::invalid_argument);
  GgufValue wide = GgufValue::uint8(1);
  wide.bits = 256;
  EXPECT_THROW(writer.add_metadata("wide", wide), std::invalid_argument);
  EXPECT_THROW(GgufValue::array(GgufType::kInt32, {GgufValue::uint32(1)}), std::invalid_argument);
  GgufValue deep = GgufValue::int32_array({1});
  for (int i = 0; i < gguf_format::kMaxArrayNesting - 1; ++i) deep = GgufValue::array(GgufType::kArray, {deep});
  EXPECT_THROW(GgufValue::array(GgufType::kArray, {deep}), std::invalid_argument);

  writer.add_tensor("t", gguf_format::kGgmlF32, {2}, Bytes(8));
  EXPECT_THROW(writer.add_tensor("t", gguf_format::kGgmlF32, {2}, Bytes(8)), std::invalid_argument);
  EXPECT_THROW(writer.add_tensor("short", gguf_format::kGgmlF32, {2}, Bytes(7)), std::invalid_argument);
  EXPECT_THROW(writer.add_tensor("partial", gguf_format::kGgmlQ8_0, {16}, Bytes(17)), std::invalid_argument);
  EXPECT_THROW(writer.add_tensor("five", gguf_format::kGgmlF32, {1, 1, 1, 1, 1}, Bytes(4)), std::invalid_argument);
  try {
    writer.add_tensor("iq2", 16, {256}, Bytes(66));
    ADD_FAILURE() << "unknown type accepted";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("tensor iq2 has ggml type 16 of unknown size"), std::string::npos)
        << error.what();
  }

  // An I/O failure names the file and leaves nothing behind.
  const std::string path = dir / "missing-dir/out.gguf";
  expect_input_error_with_prefix([&] { writer.write(path); }, path + ": ", "cannot write");
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

// ----- the real llama.cpp file ---------------------------------------------------------------------------------

// TinyStories-656K-Q8_0.gguf was written by llama.cpp's convert script (gguf-py) in the canonical layout: tensors
// in order, each padded to the alignment. Writing back every key and tensor in order reproduces it byte for byte.
TEST(Gguf, RealLlamaCppFileRoundTripsByteForByte) {
  ASSERT_TRUE(fs::exists(kTinyStories)) << kTinyStories;
  TempDir dir;
  const GgufReader reader(kTinyStories);
  EXPECT_EQ(reader.version(), 3u);
  EXPECT_EQ(reader.get_string("general.architecture"), "llama");
  EXPECT_EQ(reader.get_int64("llama.block_count"), 2);
  EXPECT_EQ(reader.get_string_array("tokenizer.ggml.tokens").size(), 2048u);
  EXPECT_EQ(reader.tensors().size(), 20u);  // output_norm, token_embd, 9 per block
  const GgufTensorInfo* embedding = reader.find_tensor("token_embd.weight");
  ASSERT_NE(embedding, nullptr);
  EXPECT_EQ(embedding->type, gguf_format::kGgmlQ8_0);
  EXPECT_EQ(embedding->ne, (std::vector<std::uint64_t>{128, 2048}));
  EXPECT_EQ(embedding->byte_size, 2048u * 4 * 34);

  GgufWriter writer;
  for (const GgufKeyValue& kv : reader.metadata()) writer.add_metadata(kv.key, kv.value);
  for (const GgufTensorInfo& t : reader.tensors()) {
    const GgufBytes data = reader.tensor_data(t);
    writer.add_tensor_view(t.name, t.type, t.ne, data.data, data.size);
  }
  const std::string copy = dir / "copy.gguf";
  writer.write(copy);
  const Bytes original = read_bytes(kTinyStories);
  const Bytes rewritten = read_bytes(copy);
  ASSERT_EQ(rewritten.size(), original.size());
  EXPECT_TRUE(rewritten == original) << "first difference at byte "
                                     << std::mismatch(original.begin(), original.end(), rewritten.begin()).first -
                                            original.begin();
}

// ----- rejection of malformed files ----------------------------------------------------------------------------

TEST(Gguf, RejectsMissingFileBadMagicAndVersion) {
  TempDir dir;
  const std::string missing = dir / "missing.gguf";
  expect_rejected_with(missing, "cannot open");

  Bytes bytes = sample_file(dir);
  Bytes bad_magic = bytes;
  bad_magic[0] = 'X';
  expect_rejected(with_bytes(dir, "magic.gguf", bad_magic), "not a GGUF file (bad magic)");

  for (std::uint32_t version : {1u, 4u, 0x03000000u}) {
    Bytes patched = bytes;
    put_le(patched, 4, version, 4);
    expect_rejected(with_bytes(dir, "version.gguf", patched),
                    "unsupported GGUF version " + std::to_string(version) + " (supported: 2 to 3, little-endian)");
  }
  Bytes version2 = bytes;
  put_le(version2, 4, 2, 4);  // version 2 has the same layout
  const GgufReader reader(with_bytes(dir, "v2.gguf", version2));
  EXPECT_EQ(reader.version(), 2u);
  EXPECT_EQ(reader.tensors().size(), 2u);
}

TEST(Gguf, RejectsTruncatedFiles) {
  TempDir dir;
  const Bytes bytes = sample_file(dir);
  ASSERT_EQ(bytes.size(), 288u);
  const auto cut = [&](std::size_t size) {
    return with_bytes(dir, "cut" + std::to_string(size) + ".gguf", Bytes(bytes.begin(), bytes.begin() + long(size)));
  };
  expect_rejected(cut(0), "truncated file: magic at byte 0 needs 4 bytes, 0 remain");
  expect_rejected(cut(2), "truncated file: magic at byte 0 needs 4 bytes, 2 remain");
  expect_rejected(cut(6), "truncated file: version at byte 4 needs 4 bytes, 2 remain");
  expect_rejected(cut(20), "truncated file: metadata count at byte 16 needs 8 bytes, 4 remain");
  // Inside the first key: the header's counts already need more than what follows.
  expect_rejected(cut(35), "truncated or corrupt file: the header claims 3 metadata entries and 2 tensors but only "
                           "11 bytes follow");
  // Inside the metadata: a value type, then an array.
  const std::size_t list = find_text(bytes, "sample.list");
  expect_rejected(cut(list + 11 + 3), "truncated file: metadata value type of sample.list at byte " +
                                          std::to_string(list + 11) + " needs 4 bytes, 3 remain");
  const std::size_t elements = list + 11 + 4 + 4 + 8;
  expect_rejected(cut(elements + 6), "truncated or corrupt file: metadata sample.list claims 3 int32 elements but "
                                     "only 6 bytes remain");
  // Inside the tensor infos.
  const std::size_t second = find_text(bytes, "second");
  expect_rejected(cut(second + 2),
                  "truncated file: tensor name at byte " + std::to_string(second) + " needs 6 bytes, 2 remain");
  expect_rejected(cut(second + 6 + 4 + 3), "truncated file: tensor extents of second at byte " +
                                               std::to_string(second + 10) + " needs 8 bytes, 3 remain");
  // Inside the tensor data (which starts at 224).
  expect_rejected(cut(220), "tensor first data (24 bytes at offset 0) ends past the end of the file, whose data "
                            "section holds 0 bytes (truncated file or bad offset)");
  expect_rejected(cut(230), "tensor first data (24 bytes at offset 0) ends past the end of the file, whose data "
                            "section holds 6 bytes (truncated file or bad offset)");
  expect_rejected(cut(224 + 32 + 4), "tensor second data (5 bytes at offset 32) ends past the end of the file, whose "
                                     "data section holds 36 bytes (truncated file or bad offset)");
  // Without the padding after the last tensor the file is still whole.
  const GgufReader reader(cut(224 + 32 + 5));
  EXPECT_EQ(reader.tensors().size(), 2u);
}

TEST(Gguf, RejectsBadTensorOffsets) {
  TempDir dir;
  const Bytes bytes = sample_file(dir);
  const std::size_t second_offset = find_text(bytes, "second") + 6 + 4 + 8 + 4;  // name, n_dims, ne[0], type
  ASSERT_EQ(bytes[second_offset], 32);

  Bytes far = bytes;
  put_le(far, second_offset, 1ull << 40, 8);
  expect_rejected(with_bytes(dir, "far.gguf", far),
                  "tensor second data (5 bytes at offset 1099511627776) ends past the end of the file, whose data "
                  "section holds 64 bytes (truncated file or bad offset)");
  Bytes huge = bytes;
  put_le(huge, second_offset, 0xffffffffffffffe0ull, 8);
  expect_rejected_with(with_bytes(dir, "huge.gguf", huge), "ends past the end of the file");

  Bytes misaligned = bytes;
  put_le(misaligned, second_offset, 40, 8);
  expect_rejected(with_bytes(dir, "misaligned.gguf", misaligned),
                  "tensor second offset 40 is not a multiple of the alignment 32");

  Bytes overlapping = bytes;
  put_le(overlapping, second_offset, 0, 8);
  expect_rejected(with_bytes(dir, "overlap.gguf", overlapping), "tensor second overlaps tensor first");
}

TEST(Gguf, RejectsBadTypesCountsAndNames) {
  TempDir dir;
  const Bytes bytes = sample_file(dir);
  const std::size_t count_key = find_text(bytes, "sample.count");
  const std::size_t list_key = find_text(bytes, "sample.list");
  const std::size_t first = find_text(bytes, "first");

  Bytes unknown_type = bytes;
  put_le(unknown_type, count_key + 12, 13, 4);
  expect_rejected(with_bytes(dir, "type.gguf", unknown_type), "metadata sample.count has unknown value type 13");

  Bytes unknown_element = bytes;
  put_le(unknown_element, list_key + 11 + 4, 99, 4);
  expect_rejected(with_bytes(dir, "element.gguf", unknown_element),
                  "metadata sample.list is an array of unknown value type 99");

  Bytes huge_count = bytes;
  put_le(huge_count, list_key + 11 + 8, 1ull << 60, 8);
  expect_rejected_with(with_bytes(dir, "count.gguf", huge_count),
                       "truncated or corrupt file: metadata sample.list claims 1152921504606846976 int32 elements");

  Bytes huge_key = bytes;
  put_le(huge_key, count_key - 8, 0xfffffffffffffff0ull, 8);
  expect_rejected(with_bytes(dir, "key.gguf", huge_key),
                  "truncated file: metadata key at byte " + std::to_string(count_key) +
                      " needs 18446744073709551600 bytes, " + std::to_string(bytes.size() - count_key) + " remain");

  const std::size_t name_value = find_text(bytes, "sample\x0c");
  Bytes huge_string = bytes;
  put_le(huge_string, name_value - 8, 1ull << 62, 8);
  expect_rejected_with(with_bytes(dir, "string.gguf", huge_string),
                       "truncated file: metadata string of general.name at byte " + std::to_string(name_value) +
                           " needs 4611686018427387904 bytes");

  Bytes huge_tensors = bytes;
  put_le(huge_tensors, 8, 1ull << 62, 8);
  expect_rejected_with(with_bytes(dir, "tensors.gguf", huge_tensors),
                       "the header claims 3 metadata entries and 4611686018427387904 tensors");

  Bytes dup = bytes;  // general.name renamed to sample.count (same length)
  std::memcpy(&dup[find_text(bytes, "general.name")], "sample.count", 12);
  expect_rejected(with_bytes(dir, "dupkey.gguf", dup), "duplicate metadata key sample.count");

  GgufWriter writer;
  writer.add_tensor("aa", gguf_format::kGgmlF32, {1}, f32_bytes({1}));
  writer.add_tensor("bb", gguf_format::kGgmlF32, {1}, f32_bytes({2}));
  writer.write(dir / "two.gguf");
  Bytes two = read_bytes(dir / "two.gguf");
  std::memcpy(&two[find_text(two, "bb")], "aa", 2);
  expect_rejected(with_bytes(dir, "duptensor.gguf", two), "duplicate tensor aa");

  Bytes unknown_ggml = bytes;
  put_le(unknown_ggml, first + 5 + 4 + 16, 16, 4);
  expect_rejected(with_bytes(dir, "ggml.gguf", unknown_ggml), "tensor first has ggml type 16 of unknown size");

  Bytes partial_block = bytes;
  put_le(partial_block, first + 5 + 4 + 16, gguf_format::kGgmlQ8_0, 4);
  expect_rejected(with_bytes(dir, "block.gguf", partial_block),
                  "tensor first of type Q8_0 has ne[0] = 3, not a multiple of the block size 32");

  Bytes five_dims = bytes;
  put_le(five_dims, first + 5, 5, 4);
  expect_rejected(with_bytes(dir, "dims.gguf", five_dims), "tensor first has 5 dimensions (at most 4)");
}

TEST(Gguf, RejectsBadAlignment) {
  TempDir dir;
  GgufWriter writer;
  writer.add_metadata(gguf_format::kAlignmentKey, GgufValue::uint32(64));
  writer.add_tensor("t", gguf_format::kGgmlF32, {1}, f32_bytes({1}));
  writer.write(dir / "a.gguf");
  const Bytes bytes = read_bytes(dir / "a.gguf");
  const std::size_t value = find_text(bytes, gguf_format::kAlignmentKey) + 17 + 4;
  ASSERT_EQ(bytes[value], 64);
  for (std::uint32_t bad : {0u, 48u}) {
    Bytes patched = bytes;
    put_le(patched, value, bad, 4);
    expect_rejected(with_bytes(dir, "bad.gguf", patched),
                    "metadata general.alignment = " + std::to_string(bad) + " is not a power of two");
  }
  Bytes signed_type = bytes;
  put_le(signed_type, value - 4, std::uint32_t(GgufType::kInt32), 4);
  expect_rejected(with_bytes(dir, "signed.gguf", signed_type),
                  "metadata general.alignment is not a uint32 (it is int32)");
}

TEST(Gguf, RejectsArraysNestedTooDeep) {
  TempDir dir;
  Bytes bytes = {'G', 'G', 'U', 'F'};
  const auto put = [&](std::uint64_t v, std::size_t size) {
    for (std::size_t i = 0; i < size; ++i) bytes.push_back(std::uint8_t(v >> (8 * i)));
  };
  put(3, 4);  // version
  put(0, 8);  // tensors
  put(1, 8);  // key/values
  put(1, 8);
  bytes.push_back('k');
  put(std::uint32_t(GgufType::kArray), 4);
  for (int depth = 0; depth < gguf_format::kMaxArrayNesting; ++depth) {
    put(std::uint32_t(GgufType::kArray), 4);
    put(1, 8);
  }
  bytes.insert(bytes.end(), 64, 0);  // room for what a reader without a limit would go on to read
  expect_rejected(with_bytes(dir, "deep.gguf", bytes),
                  "metadata k nests arrays deeper than " + std::to_string(gguf_format::kMaxArrayNesting));
}

// Random corruptions of valid files (bytes overwritten, the file cut short): the reader either accepts the file,
// with every tensor inside it, or throws a one-line InputError naming it; never anything else.
TEST(Gguf, CorruptedFilesFailCleanly) {
  TempDir dir;
  std::vector<Bytes> originals = {sample_file(dir)};
  GgufWriter writer;
  for (const GgufKeyValue& kv : every_type_metadata()) writer.add_metadata(kv.key, kv.value);
  writer.add_tensor("q", gguf_format::kGgmlQ8_0, {32, 2}, Bytes(68, 3));
  writer.add_tensor("f", gguf_format::kGgmlF32, {2}, f32_bytes({1, 2}));
  writer.write(dir / "types.gguf");
  originals.push_back(read_bytes(dir / "types.gguf"));

  std::mt19937_64 random(20240601);
  const std::string path = dir / "corrupt.gguf";
  int accepted = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    Bytes bytes = originals[std::size_t(trial) % originals.size()];
    const int edits = 1 + int(random() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t at = std::size_t(random() % bytes.size());
      // Mostly small numbers and 0xff runs: the values that turn counts, lengths and types into edge cases.
      const std::uint64_t choice = random() % 4;
      bytes[at] = choice == 0 ? 0xff : choice == 1 ? std::uint8_t(random() % 16) : std::uint8_t(random());
    }
    if (random() % 4 == 0) bytes.resize(std::size_t(random() % bytes.size()));
    write_bytes(path, bytes);
    try {
      const GgufReader reader(path);
      std::uint64_t checksum = 0;
      for (const GgufTensorInfo& t : reader.tensors()) {
        const GgufBytes data = reader.tensor_data(t);
        ASSERT_LE(reader.data_offset() + t.offset + data.size, bytes.size()) << t.name;
        for (std::size_t i = 0; i < data.size; ++i) checksum += data.data[i];
      }
      ++accepted;
      (void)checksum;
    } catch (const InputError& error) {
      const std::string message = error.what();
      ASSERT_EQ(message.rfind(path + ": ", 0), 0u) << message;
      ASSERT_EQ(message.find('\n'), std::string::npos) << message;
    }
  }
  EXPECT_GT(accepted, 0);  // some edits land in values or tensor data
}

// ----- an independent reader (helpers in gguf_test_support.h) ------------------------------------------------

TEST(Gguf, IndependentReaderAgrees) {
  TempDir dir;
  const std::string prefix = gguf_npm_prefix();
  ASSERT_FALSE(prefix.empty());

  // Several metadata types (no -0.0 or NaN: JSON has no way to carry them) and two F32 tensors of different shapes.
  using V = GgufValue;
  GgufWriter writer;
  writer.add_metadata("general.architecture", V::string("oscar-test"));
  writer.add_metadata("general.alignment", V::uint32(64));
  writer.add_metadata("test.uint8", V::uint8(200));
  writer.add_metadata("test.int8", V::int8(-100));
  writer.add_metadata("test.uint16", V::uint16(60000));
  writer.add_metadata("test.int16", V::int16(-30000));
  writer.add_metadata("test.uint32", V::uint32(4000000000u));
  writer.add_metadata("test.int32", V::int32(-2000000000));
  writer.add_metadata("test.uint64", V::uint64(18446744073709551615ull));
  writer.add_metadata("test.int64", V::int64(-9223372036854775807LL - 1));
  writer.add_metadata("test.float32", V::float32(0.1f));
  writer.add_metadata("test.float64", V::float64(1.0 / 3.0));
  writer.add_metadata("test.bool", V::boolean(true));
  writer.add_metadata("test.string.utf8", V::string("h\xc3\xa9llo \xe2\x9c\x93"));
  writer.add_metadata("test.string.empty", V::string(""));
  writer.add_metadata("test.strings", V::string_array({"a", "", "\xe6\x97\xa5"}));
  writer.add_metadata("test.floats", V::float32_array({1.5f, -2.0f, 1.0e-30f}));
  writer.add_metadata("test.ints.empty", V::int32_array({}));
  writer.add_metadata("test.uint64s", V::array(GgufType::kUint64, {V::uint64(1), V::uint64(1ull << 63)}));
  writer.add_metadata("test.nested", V::array(GgufType::kArray, {V::int32_array({1, 2}), V::int32_array({})}));
  writer.add_metadata("test.bools", V::array(GgufType::kBool, {V::boolean(false), V::boolean(true)}));
  writer.add_tensor("matrix", gguf_format::kGgmlF32, {3, 2}, f32_bytes({1, -2, 3.5f, 4, 5, 0.25f}));
  writer.add_tensor("vector", gguf_format::kGgmlF32, {5}, f32_bytes({10, 20, 30, 40, 1.0e-7f}));
  const std::string path = dir / "independent.gguf";
  writer.write(path);

  const GgufReader reader(path);
  const nlohmann::json node = read_with_node(prefix, path, dir);
  ASSERT_FALSE(node.is_null());
  EXPECT_EQ(node.at("metadata").size(), 21u);
  EXPECT_EQ(node.at("tensors").size(), 2u);
  EXPECT_EQ(node.at("tensors")[1].at("offset").get<std::string>(), "64");  // alignment 64 as node sees it
  expect_node_agrees(node, reader);

  // And the real llama.cpp file, read by both.
  const GgufReader tiny(kTinyStories);
  const nlohmann::json tiny_node = read_with_node(prefix, kTinyStories, dir);
  ASSERT_FALSE(tiny_node.is_null());
  expect_node_agrees(tiny_node, tiny);
}

}  // namespace
}  // namespace oscar::io
