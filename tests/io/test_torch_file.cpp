// torch.save files: zip container, pickle reader/writer, single-tensor files; checked against Python torch.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/pickle.h"
#include "io/torch_file.h"
#include "io/zip_archive.h"
#include "io_test_support.h"

namespace oscar::io {
namespace {

namespace fs = std::filesystem;
using pickle::Kind;
using pickle::ValuePtr;
using test::PythonRun;
using test::read_bytes;
using test::read_torch_record;
using test::TempDir;
using test::write_bytes;

const std::string kZooDir = std::string(OSCAR_SHARED_DATA) + "/rotationzoo/qwen3-4b-thinking-2507/";
const std::string kZooKeyFile = kZooDir + "k_rotation_qqt_r_h_pbr.pt";

// Expects `action` to throw InputError whose message names `path` (and contains `fragment`).
void expect_input_error(const std::function<void()>& action, const std::string& path, const std::string& fragment = "") {
  try {
    action();
    ADD_FAILURE() << "no error for " << path;
  } catch (const InputError& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(fragment), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

DType dtype_from_name(const std::string& name) {
  for (DType dtype : {DType::kFloat32, DType::kFloat16, DType::kBFloat16, DType::kFloat64, DType::kInt32, DType::kInt64}) {
    if (name == dtype_name(dtype)) return dtype;
  }
  throw std::runtime_error("unknown dtype " + name);
}

// <name>.expect: dtype, shape, then one value per line as Python float.hex().
struct Expected {
  DType dtype;
  std::vector<std::int64_t> shape;
  std::vector<double> values;
};

Expected read_expect(const std::string& path) {
  std::ifstream in(path);
  Expected expected;
  std::string line;
  std::getline(in, line);
  expected.dtype = dtype_from_name(line);
  std::getline(in, line);
  std::istringstream shape(line);
  for (std::int64_t size; shape >> size;) expected.shape.push_back(size);
  while (std::getline(in, line)) {
    if (!line.empty()) expected.values.push_back(std::strtod(line.c_str(), nullptr));
  }
  return expected;
}

void write_expect(const std::string& path, const HostTensor& tensor) {
  std::ofstream out(path);
  out << dtype_name(tensor.dtype) << "\n";
  for (std::size_t i = 0; i < tensor.shape.size(); ++i) out << (i ? " " : "") << tensor.shape[i];
  out << "\n";
  char text[64];
  for (std::int64_t i = 0; i < tensor.numel(); ++i) {
    std::snprintf(text, sizeof text, "%a\n", tensor.element_as_double(i));
    out << text;
  }
}

void expect_matches(const HostTensor& tensor, const Expected& expected, const std::string& what) {
  ASSERT_EQ(tensor.dtype, expected.dtype) << what;
  ASSERT_EQ(tensor.shape, expected.shape) << what;
  ASSERT_EQ(std::size_t(tensor.numel()), expected.values.size()) << what;
  ASSERT_EQ(tensor.bytes.size(), tensor.nbytes()) << what;
  for (std::size_t i = 0; i < expected.values.size(); ++i) {
    ASSERT_EQ(tensor.element_as_double(std::int64_t(i)), expected.values[i]) << what << " element " << i;
  }
}

// Values a bf16/fp16/fp32/... tensor holds exactly: small multiples of 1/8.
HostTensor pattern_tensor(DType dtype, std::vector<std::int64_t> shape) {
  HostTensor tensor;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.bytes.resize(tensor.nbytes());
  for (std::int64_t i = 0; i < tensor.numel(); ++i) {
    const double value = double((i * 5) % 23 - 11) / 8.0;
    std::uint8_t* at = tensor.bytes.data() + std::size_t(i) * dtype_size(dtype);
    switch (dtype) {
      case DType::kFloat32: { const float v = float(value); std::memcpy(at, &v, 4); break; }
      case DType::kFloat64: std::memcpy(at, &value, 8); break;
      case DType::kFloat16: { const std::uint16_t v = float_to_float16(float(value)); std::memcpy(at, &v, 2); break; }
      case DType::kBFloat16: { const std::uint16_t v = float_to_bfloat16(float(value)); std::memcpy(at, &v, 2); break; }
      case DType::kInt32: { const std::int32_t v = std::int32_t(i * 1000 - 7); std::memcpy(at, &v, 4); break; }
      case DType::kInt64: { const std::int64_t v = (i - 3) * (std::int64_t(1) << 40); std::memcpy(at, &v, 8); break; }
      case DType::kUInt8: at[0] = std::uint8_t((i * 37 + 11) & 0xff); break;
    }
  }
  return tensor;
}

// ---------------------------------------------------------------------------------------------------------
// Zip reader on the real zoo file
// ---------------------------------------------------------------------------------------------------------

TEST(ZipReader, IndexesTheZooFile) {
  const ZipReader zip(kZooKeyFile);
  ASSERT_EQ(zip.entries().size(), 78u);  // data.pkl, 3 metadata, 72 storages, version, serialization_id
  EXPECT_EQ(zip.entries().front().name, "k_rotation_qqt_r_h_pbr/data.pkl");
  const ZipEntry* storage = zip.find("k_rotation_qqt_r_h_pbr/data/0");
  ASSERT_NE(storage, nullptr);
  EXPECT_EQ(storage->size, 128u * 128u * 4u);
  for (const ZipEntry& entry : zip.entries()) {
    EXPECT_EQ(entry.data_offset % 64, 0u) << entry.name;
    EXPECT_EQ(zip.read(entry).size(), entry.size) << entry.name;  // CRC checked
  }
  const TorchArchive archive(kZooKeyFile);
  EXPECT_EQ(archive.root(), "k_rotation_qqt_r_h_pbr");
  const std::vector<std::uint8_t> version = archive.zip().read(archive.record("version"));
  EXPECT_EQ(std::string(version.begin(), version.end()), "3\n");
  EXPECT_EQ(archive.find_record("nothing"), nullptr);
  expect_input_error([&] { archive.record("nothing"); }, kZooKeyFile, "missing record 'nothing'");
}

TEST(ZipReader, ReadsARangeWithoutTheWholeEntry) {
  const ZipReader zip(kZooKeyFile);
  const ZipEntry& storage = *zip.find("k_rotation_qqt_r_h_pbr/data/0");
  const std::vector<std::uint8_t> whole = zip.read(storage);
  std::vector<std::uint8_t> part(100);
  zip.read_range(storage, 1000, 100, part.data());
  EXPECT_TRUE(std::equal(part.begin(), part.end(), whole.begin() + 1000));
  expect_input_error([&] { zip.read_range(storage, storage.size - 10, 11, part.data()); }, kZooKeyFile, "past its end");
}

TEST(ZipReader, UnderstandsZip64ExtraFields) {
  // One stored entry whose central directory sizes and offset are saturated and continued in a zip64
  // extra field, with zip64 end records: the layout miniz uses for archives past 4 GiB.
  TempDir dir;
  const std::string name = "archive/data.pkl";
  const std::string payload = "hello zip64";
  std::string zip;
  auto le = [&](std::uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) zip += char((value >> (8 * i)) & 0xff);
  };
  const std::uint32_t crc = std::uint32_t(::crc32(0, reinterpret_cast<const unsigned char*>(payload.data()), unsigned(payload.size())));
  le(0x04034b50, 4); le(45, 2); le(0, 2); le(0, 2); le(0, 4); le(crc, 4);
  le(payload.size(), 4); le(payload.size(), 4); le(name.size(), 2); le(0, 2);
  zip += name + payload;
  const std::uint64_t directory_offset = zip.size();
  le(0x02014b50, 4); le(45, 2); le(45, 2); le(0, 2); le(0, 2); le(0, 4); le(crc, 4);
  le(0xffffffff, 4); le(0xffffffff, 4); le(name.size(), 2); le(28, 2); le(0, 2); le(0, 2); le(0, 2); le(0, 4);
  le(0xffffffff, 4);
  zip += name;
  le(0x0001, 2); le(24, 2); le(payload.size(), 8); le(payload.size(), 8); le(0, 8);
  const std::uint64_t directory_size = zip.size() - directory_offset;
  const std::uint64_t zip64_end = zip.size();
  le(0x06064b50, 4); le(44, 8); le(45, 2); le(45, 2); le(0, 4); le(0, 4); le(1, 8); le(1, 8);
  le(directory_size, 8); le(directory_offset, 8);
  le(0x07064b50, 4); le(0, 4); le(zip64_end, 8); le(1, 4);
  le(0x06054b50, 4); le(0, 2); le(0, 2); le(0xffff, 2); le(0xffff, 2); le(0xffffffff, 4); le(0xffffffff, 4); le(0, 2);
  const std::string path = dir / "zip64.pt";
  write_bytes(path, std::vector<std::uint8_t>(zip.begin(), zip.end()));

  const ZipReader reader(path);
  ASSERT_EQ(reader.entries().size(), 1u);
  const std::vector<std::uint8_t> data = reader.read(reader.entries()[0]);
  EXPECT_EQ(std::string(data.begin(), data.end()), payload);
}

TEST(ZipReader, RefusesCompressedEntries) {
  TempDir dir;
  const std::string path = dir / "deflated.pt";
  write_torch_tensor(path, pattern_tensor(DType::kFloat32, {4}));
  std::vector<std::uint8_t> bytes = read_bytes(path);
  const std::uint8_t central_signature[] = {'P', 'K', 1, 2};
  const auto central = std::search(bytes.begin(), bytes.end(), std::begin(central_signature), std::end(central_signature));
  ASSERT_NE(central, bytes.end());
  central[10] = 8;  // method: deflate
  write_bytes(path, bytes);
  expect_input_error([&] { ZipReader reader(path); }, path, "compressed (method 8)");
}

// ---------------------------------------------------------------------------------------------------------
// Pickle
// ---------------------------------------------------------------------------------------------------------

TEST(Pickle, ReadsTheZooPickle) {
  const TorchArchive archive(kZooKeyFile);
  const ValuePtr root = archive.load_pickle();
  ASSERT_TRUE(root->is(Kind::kDict));
  ASSERT_EQ(root->entries.size(), 4u);
  EXPECT_EQ(root->find("format_version")->integer, 1);
  EXPECT_EQ(root->find("objective")->text, "qqt_r_h_pbr");
  const pickle::Value* layers = root->find("layers");
  ASSERT_NE(layers, nullptr);
  ASSERT_EQ(layers->entries.size(), 36u);
  const pickle::Value& layer35 = *layers->entries.back().second;
  EXPECT_EQ(layers->entries.back().first->integer, 35);
  const pickle::TensorRef& rotation = layer35.find("rotation")->tensor;
  EXPECT_EQ(rotation.storage.key, "70");
  EXPECT_EQ(rotation.storage.dtype, DType::kFloat32);
  EXPECT_EQ(rotation.shape, (std::vector<std::int64_t>{128, 128}));
  EXPECT_EQ(rotation.stride, (std::vector<std::int64_t>{128, 1}));
}

TEST(Pickle, RewritesTheZooPickleByteForByte) {
  const std::vector<std::uint8_t> original = read_torch_record(kZooKeyFile, "data.pkl");
  const ValuePtr root = pickle::unpickle(original.data(), original.size(), "zoo");
  const std::string rewritten = pickle::pickle_protocol2(*root);
  EXPECT_EQ(rewritten, std::string(original.begin(), original.end()));
}

TEST(Pickle, MatchesPythonPickleProtocol2) {
  TempDir dir;
  const PythonRun run = test::run_torch_roundtrip({"pickle-cases", dir.path()});
  ASSERT_EQ(run.status, 0) << run.output;
  int cases = 0;
  for (const auto& file : fs::directory_iterator(dir.path())) {
    if (file.path().extension() != ".p2") continue;
    ++cases;
    const std::string stem = file.path().stem().string();
    const std::vector<std::uint8_t> protocol2 = read_bytes(file.path().string());
    const std::vector<std::uint8_t> protocol4 = read_bytes(dir / (stem + ".p4"));
    const std::string expected(protocol2.begin(), protocol2.end());
    // Reading either protocol and writing protocol 2 gives exactly Python's protocol-2 bytes.
    EXPECT_EQ(pickle::pickle_protocol2(*pickle::unpickle(protocol2.data(), protocol2.size(), stem)), expected) << stem;
    EXPECT_EQ(pickle::pickle_protocol2(*pickle::unpickle(protocol4.data(), protocol4.size(), stem)), expected) << stem;
  }
  EXPECT_EQ(cases, 6);

  // A tree built in C++: a shared tuple is written once and then fetched from the memo, like Python does.
  const ValuePtr shared = pickle::make_tuple({pickle::make_int(0), pickle::make_int(1), pickle::make_int(2),
                                              pickle::make_int(3), pickle::make_int(4)});
  const ValuePtr tuples = pickle::make_tuple(
      {pickle::make_tuple({}), pickle::make_tuple({pickle::make_int(1)}),
       pickle::make_tuple({pickle::make_int(1), pickle::make_int(2)}),
       pickle::make_tuple({pickle::make_int(1), pickle::make_int(2), pickle::make_int(3)}),
       pickle::make_tuple({pickle::make_int(1), pickle::make_int(2), pickle::make_int(3), pickle::make_int(4)})});
  const ValuePtr one = pickle::make_dict();
  one->add(pickle::make_string("k"), pickle::make_int(1));
  const ValuePtr containers = pickle::make_dict();
  containers->add(pickle::make_string("tuples"), tuples);
  containers->add(pickle::make_string("list"),
                  pickle::make_list({pickle::make_int(1), pickle::make_list({pickle::make_int(2), pickle::make_list({pickle::make_int(3)})})}));
  containers->add(pickle::make_string("one"), one);
  containers->add(pickle::make_string("empty"), pickle::make_dict());
  containers->add(pickle::make_string("empty_list"), pickle::make_list({}));
  containers->add(pickle::make_string("shared"), pickle::make_list({shared, shared}));
  const std::vector<std::uint8_t> expected = read_bytes(dir / "containers.p2");
  EXPECT_EQ(pickle::pickle_protocol2(*containers), std::string(expected.begin(), expected.end()));
}

void expect_unpickle_error(const std::string& bytes, const std::string& fragment) {
  try {
    pickle::unpickle(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "case.pkl");
    ADD_FAILURE() << "no error, expected '" << fragment << "'";
  } catch (const InputError& error) {
    EXPECT_NE(std::string(error.what()).find("case.pkl: byte "), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find(fragment), std::string::npos) << error.what();
  }
}

// A string literal with its embedded NUL bytes.
template <std::size_t N>
std::string bytes_of(const char (&text)[N]) {
  return std::string(text, N - 1);
}

TEST(Pickle, RefusesMalformedStreams) {
  expect_unpickle_error("", "truncated");
  expect_unpickle_error(bytes_of("\x80\x02"), "truncated");
  expect_unpickle_error(bytes_of("\x80\x02" "cos\nsystem\n)R."), "unsupported global 'os.system'");
  expect_unpickle_error(bytes_of("\x80\x02" "cbuiltins\neval\n."), "unsupported global 'builtins.eval'");
  expect_unpickle_error(bytes_of("\x80\x02s."), "stack underflow");
  expect_unpickle_error(bytes_of("\x80\x02]K\x01(a."), "stack underflow");  // APPEND may not reach below a MARK
  expect_unpickle_error(bytes_of("\x80\x02K\x01K\x02."), "STOP with 2 values");
  expect_unpickle_error(bytes_of("\x80\x02h\x05."), "memo key 5 was never stored");
  expect_unpickle_error(bytes_of("\x80\x02X\xff\xff\xff\x7f" "abc."), "truncated");
  expect_unpickle_error(bytes_of("\x80\x02]q\x00h\x00" "a."), "self-referencing");
  expect_unpickle_error(bytes_of("\x80\x02K\x01\xff."), "unsupported opcode 0xff");
  expect_unpickle_error(bytes_of("\x80\x02}]K\x01s."), "unhashable dict key of type list");
  expect_unpickle_error(bytes_of("\x80\x02\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09."), "wider than 64 bits");
  std::string deep = bytes_of("\x80\x02)");
  deep.append(200, char(0x85));  // (((),),) nested 200 deep
  deep += ".";
  expect_unpickle_error(deep, "nested deeper");
  expect_unpickle_error(bytes_of("\x80\x02" "ctorch._utils\n_rebuild_tensor_v2\nK\x01\x85R."), "wrong argument count");
  expect_unpickle_error(bytes_of("\x80\x02(X\x07\0\0\0storagectorch\nFloatStorage\nX\x01\0\0\x00" "0X\x03\0\0\0cpu"
                                 "J\xff\xff\xff\xff" "tQ."),
                        "storage size is not a non-negative int");
}

TEST(Pickle, ReadsDuplicateKeysLikePython) {
  // {1: 'a', True: 'b'}: True == 1, so Python keeps one entry, in the first position, with the last value.
  const std::string bytes = bytes_of("\x80\x02}(K\x01X\x01\0\0\0aK\x02X\x01\0\0\0c\x88X\x01\0\0\0bu.");
  const ValuePtr dict = pickle::unpickle(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "dup");
  ASSERT_EQ(dict->entries.size(), 2u);
  EXPECT_EQ(dict->entries[0].first->integer, 1);
  EXPECT_EQ(dict->entries[0].second->text, "b");
  EXPECT_EQ(dict->entries[1].second->text, "c");
}

TEST(Pickle, NeverCrashesOnRandomStreams) {
  // Random streams over the opcode alphabet reach deep into the reader; every outcome must be a value or
  // an InputError.
  const std::string alphabet = "()0125JKMNQRUTXacehjqrstu}]G\x80\x85\x86\x87\x88\x89\x8a\x8b\x8c\x94\x93\x95.BC";
  std::mt19937 random(42);
  int parsed = 0;
  for (int round = 0; round < 30000; ++round) {
    std::string bytes = "\x80\x02";
    const int length = int(random() % 40);
    for (int i = 0; i < length; ++i) {
      bytes += random() % 3 ? alphabet[random() % alphabet.size()] : char(random() % 256);
    }
    if (random() % 2) bytes += '.';
    try {
      pickle::unpickle(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "fuzz");
      ++parsed;
    } catch (const InputError&) {
    }
  }
  EXPECT_GT(parsed, 0);
}

TEST(Pickle, NeverCrashesOnMutatedTorchPickles) {
  const std::vector<std::uint8_t> original = read_torch_record(kZooKeyFile, "data.pkl");
  std::mt19937 random(7);
  for (int round = 0; round < 3000; ++round) {
    std::vector<std::uint8_t> bytes = original;
    const int edits = 1 + int(random() % 4);
    for (int i = 0; i < edits; ++i) bytes[random() % bytes.size()] = std::uint8_t(random());
    if (random() % 4 == 0) bytes.resize(random() % bytes.size());
    try {
      pickle::unpickle(bytes.data(), bytes.size(), "mutated");
    } catch (const InputError&) {
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Single-tensor files
// ---------------------------------------------------------------------------------------------------------

TEST(TorchFile, ReadsTensorsPythonWrote) {
  TempDir dir;
  const PythonRun run = test::run_torch_roundtrip({"save-tensors", dir.path()});
  ASSERT_EQ(run.status, 0) << run.output;
  for (const std::string name : {"bf16", "fp16", "fp32", "fp64", "int32", "int64", "scalar", "empty", "bf16_big",
                                 "view_offset", "requires_grad", "proto4"}) {
    const std::string path = dir / (name + ".pt");
    const Expected expected = read_expect(dir / (std::string(name) + ".expect"));
    const TensorHeader header = read_torch_tensor_header(path);
    EXPECT_EQ(header.dtype, expected.dtype) << name;
    EXPECT_EQ(header.shape, expected.shape) << name;
    expect_matches(read_torch_tensor(path), expected, name);
  }
  const std::string transposed = dir / "transposed.pt";
  expect_input_error([&] { read_torch_tensor(transposed); }, transposed, "not C-contiguous");
  expect_input_error([&] { read_torch_tensor_header(transposed); }, transposed, "not C-contiguous");

  // A one-element dict: not a single tensor, but its tensor loads through the archive.
  const std::string dict1 = dir / "dict1.pt";
  expect_input_error([&] { read_torch_tensor(dict1); }, dict1, "holds a dict");
  const TorchArchive archive(dict1);
  const ValuePtr root = archive.load_pickle();
  ASSERT_EQ(root->entries.size(), 1u);
  const pickle::Value* only = root->find("only");
  ASSERT_TRUE(only && only->is(Kind::kTensor));
  expect_matches(archive.load_tensor(only->tensor), read_expect(dir / "dict1.expect"), "dict1");
}

TEST(TorchFile, PythonLoadsWhatWeWrite) {
  TempDir dir;
  const std::vector<std::pair<std::string, HostTensor>> tensors = {
      {"bf16", pattern_tensor(DType::kBFloat16, {6, 4, 8})},
      {"fp16", pattern_tensor(DType::kFloat16, {3, 2, 5})},
      {"fp32", pattern_tensor(DType::kFloat32, {7, 3})},
      {"fp64", pattern_tensor(DType::kFloat64, {9})},
      {"int32", pattern_tensor(DType::kInt32, {5})},
      {"int64", pattern_tensor(DType::kInt64, {2, 4})},
      {"uint8", pattern_tensor(DType::kUInt8, {3, 7})},  // INT2 codes
      {"scalar", pattern_tensor(DType::kFloat32, {})},
      {"empty", pattern_tensor(DType::kBFloat16, {0, 8, 128})},
      {"large", pattern_tensor(DType::kBFloat16, {300, 8, 128})},  // sizes past BININT2, LONG_BINPUT-free
  };
  for (const auto& [name, tensor] : tensors) {
    write_torch_tensor(dir / (name + ".pt"), tensor);
    write_expect(dir / (name + ".expect"), tensor);
  }
  const PythonRun run = test::run_torch_roundtrip({"check-tensors", dir.path()});
  ASSERT_EQ(run.status, 0) << run.output;

  for (const auto& [name, tensor] : tensors) {
    const std::string ours = dir / (name + ".pt");
    const std::string theirs = dir / ("py_" + name + ".pt");
    // Python torch.save of the same tensor: the same pickle and the same storage bytes.
    EXPECT_EQ(read_torch_record(ours, "data.pkl"), read_torch_record(theirs, "data.pkl")) << name;
    if (tensor.numel() > 0) {
      EXPECT_EQ(read_torch_record(ours, "data/0"), read_torch_record(theirs, "data/0")) << name;
    }
    // And our reader gets back exactly what was written.
    const HostTensor back = read_torch_tensor(ours);
    EXPECT_EQ(back.dtype, tensor.dtype) << name;
    EXPECT_EQ(back.shape, tensor.shape) << name;
    EXPECT_EQ(back.bytes, tensor.bytes) << name;
  }
}

TEST(TorchFile, WritesTorchSaveLayoutReproducibly) {
  TempDir dir;
  const std::string path = dir / "chunk_7.pt";
  write_torch_tensor(path, pattern_tensor(DType::kBFloat16, {10, 2, 64}));
  const ZipReader zip(path);
  std::vector<std::string> names;
  for (const ZipEntry& entry : zip.entries()) {
    names.push_back(entry.name);
    EXPECT_EQ(entry.data_offset % 64, 0u) << entry.name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"chunk_7/data.pkl", "chunk_7/.format_version", "chunk_7/.storage_alignment",
                                             "chunk_7/byteorder", "chunk_7/data/0", "chunk_7/version",
                                             "chunk_7/.data/serialization_id"}));
  const std::vector<std::uint8_t> id = zip.read(*zip.find("chunk_7/.data/serialization_id"));
  EXPECT_EQ(id.size(), 40u);
  EXPECT_TRUE(std::all_of(id.begin(), id.end(), [](std::uint8_t c) { return c >= '0' && c <= '9'; }));

  const std::vector<std::uint8_t> first = read_bytes(path);
  write_torch_tensor(path, pattern_tensor(DType::kBFloat16, {10, 2, 64}));  // overwrite in place
  EXPECT_EQ(read_bytes(path), first);
  std::size_t files = 0;
  for (const auto& file : fs::directory_iterator(dir.path())) files += file.is_regular_file();
  EXPECT_EQ(files, 1u) << "temporary files left behind";
}

TEST(TorchFile, FailedWriteLeavesNothing) {
  TempDir dir;
  EXPECT_THROW(write_torch_tensor(dir / "missing/dir/x.pt", pattern_tensor(DType::kFloat32, {2})), std::runtime_error);
  HostTensor inconsistent = pattern_tensor(DType::kFloat32, {4});
  inconsistent.bytes.resize(3);
  EXPECT_THROW(write_torch_tensor(dir / "bad.pt", inconsistent), std::invalid_argument);
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(TorchFile, RefusesMissingAndNonFiles) {
  TempDir dir;
  const std::string missing = dir / "absent.pt";
  expect_input_error([&] { read_torch_tensor(missing); }, missing, "cannot open");
  expect_input_error([&] { read_torch_tensor(dir.path()); }, dir.path(), "not a regular file");
  const std::string empty = dir / "empty.pt";
  write_bytes(empty, {});
  expect_input_error([&] { read_torch_tensor(empty); }, empty, "not a zip archive");
}

TEST(TorchFile, EveryTruncationIsAnInputError) {
  TempDir dir;
  const std::string source = dir / "whole.pt";
  write_torch_tensor(source, pattern_tensor(DType::kFloat16, {3, 5}));
  const std::vector<std::uint8_t> whole = read_bytes(source);
  const std::string path = dir / "cut.pt";
  for (std::size_t length = 0; length < whole.size(); ++length) {
    write_bytes(path, std::vector<std::uint8_t>(whole.begin(), whole.begin() + std::ptrdiff_t(length)));
    expect_input_error([&] { read_torch_tensor(path); }, path);
    expect_input_error([&] { read_torch_tensor_header(path); }, path);
  }
}

TEST(TorchFile, CorruptedBytesNeverCrash) {
  TempDir dir;
  const std::string source = dir / "whole.pt";
  const HostTensor tensor = pattern_tensor(DType::kInt32, {6});
  write_torch_tensor(source, tensor);
  const std::vector<std::uint8_t> whole = read_bytes(source);
  const std::string path = dir / "corrupt.pt";
  int refused = 0;
  for (std::size_t position = 0; position < whole.size(); ++position) {
    for (std::uint8_t change : {std::uint8_t(0xff), std::uint8_t(0x01), std::uint8_t(0x80)}) {
      std::vector<std::uint8_t> bytes = whole;
      bytes[position] ^= change;
      write_bytes(path, bytes);
      try {
        const HostTensor back = read_torch_tensor(path);
        // Only bytes nothing depends on (padding, unused header fields) may change without an error.
        EXPECT_EQ(back.bytes, tensor.bytes) << "byte " << position;
      } catch (const InputError& error) {
        ++refused;
        EXPECT_NE(std::string(error.what()).find(path), std::string::npos) << error.what();
      }
    }
  }
  EXPECT_GT(refused, 0);
}

TEST(TorchFile, RandomGarbageIsAnInputError) {
  TempDir dir;
  const std::string path = dir / "garbage.pt";
  std::mt19937 random(3);
  for (int round = 0; round < 300; ++round) {
    std::vector<std::uint8_t> bytes(random() % 3000);
    for (std::uint8_t& byte : bytes) byte = std::uint8_t(random());
    if (round % 3 == 0 && bytes.size() >= 22) {
      // An end record with random fields, so parsing goes past the signature scan.
      const std::size_t at = bytes.size() - 22;
      bytes[at] = 'P', bytes[at + 1] = 'K', bytes[at + 2] = 5, bytes[at + 3] = 6, bytes[at + 4] = 0;
      bytes[at + 5] = bytes[at + 6] = bytes[at + 7] = 0, bytes[at + 20] = bytes[at + 21] = 0;
    }
    write_bytes(path, bytes);
    expect_input_error([&] { read_torch_tensor(path); }, path);
  }
}

}  // namespace
}  // namespace oscar::io
