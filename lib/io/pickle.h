// Python pickles as torch.save writes them: a value tree, a hardened reader and a byte-exact protocol-2 writer.
//
// Only what `torch.save` of tensors inside dicts/lists/tuples produces is modelled: None, bool, int, float,
// str, bytes, tuple, list, dict, collections.OrderedDict, storages (persistent ids) and tensors
// (torch._utils._rebuild_tensor_v2 / _v3). Any other global is refused, naming it, so loading never runs
// or imitates arbitrary Python code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/dtype.h"

namespace oscar::io::pickle {

enum class Kind : std::uint8_t {
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kBytes,
  kTuple,
  kList,
  kDict,
  kGlobal,   ///< a permitted Python global (class or function), text = "module.name"
  kStorage,  ///< a torch storage named by a persistent id
  kTensor,
};

/// "int", "str", "dict", ...: Python-like names for error messages.
const char* kind_name(Kind kind);

/// One storage record of the archive: ('storage', torch.<T>Storage, key, location, numel).
struct StorageRef {
  DType dtype = DType::kFloat32;
  std::string key;             ///< record "data/<key>"
  std::string location = "cpu";
  std::int64_t numel = 0;      ///< elements in the whole storage
};

/// The arguments of torch._utils._rebuild_tensor_v2: a strided view into a storage.
struct TensorRef {
  StorageRef storage;
  std::int64_t storage_offset = 0;  ///< in elements
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> stride;  ///< in elements
  bool requires_grad = false;

  DType dtype() const { return storage.dtype; }
  /// C-contiguous strides for `shape`.
  static std::vector<std::int64_t> contiguous_stride(const std::vector<std::int64_t>& shape);
};

struct Value;
using ValuePtr = std::shared_ptr<Value>;

/// A node of the value tree. Containers hold shared pointers because a pickle may reference one object
/// several times (memo); the reader guarantees the graph it returns is acyclic and shallow.
struct Value {
  Kind kind = Kind::kNone;
  bool boolean = false;        ///< kBool
  std::int64_t integer = 0;    ///< kInt
  double real = 0.0;           ///< kFloat
  std::string text;            ///< kString (UTF-8), kBytes, kGlobal ("module.name")
  std::vector<ValuePtr> items;                          ///< kTuple, kList
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;   ///< kDict, insertion order
  bool ordered_dict = false;   ///< kDict built as collections.OrderedDict (written back as one)
  StorageRef storage;          ///< kStorage
  TensorRef tensor;            ///< kTensor

  bool is(Kind expected) const { return kind == expected; }
  /// The value stored under string key `key` in a dict, or nullptr (also when this is not a dict).
  const Value* find(std::string_view key) const;
  /// Appends an entry to a dict (no duplicate check: builders add each key once).
  void add(ValuePtr key, ValuePtr value) { entries.emplace_back(std::move(key), std::move(value)); }
};

ValuePtr make_none();
ValuePtr make_bool(bool value);
ValuePtr make_int(std::int64_t value);
ValuePtr make_float(double value);
ValuePtr make_string(std::string value);
ValuePtr make_tuple(std::vector<ValuePtr> items);
ValuePtr make_list(std::vector<ValuePtr> items);
ValuePtr make_dict();
ValuePtr make_tensor(TensorRef tensor);

/// "torch.FloatStorage" etc. for a dtype, and back (false when the name is not a supported storage).
const char* storage_class_name(DType dtype);
bool dtype_from_storage_class(std::string_view class_name, DType* dtype);

/// Reads a pickle (protocol 2, plus the protocol 3-5 opcodes torch and Python emit). Every read is
/// bounds-checked and the result is limited in size and depth, so garbage input gives an error, never a
/// crash. Throws InputError("<context>: byte <offset>: <problem>"); context is e.g. "x.pt: data.pkl".
ValuePtr unpickle(const std::uint8_t* data, std::size_t size, const std::string& context);

/// The bytes Python's pickle protocol 2 writes for the same object graph inside torch.save: strings are
/// memoized by value (Python reuses interned literals such as 'layer_id' or 'cpu'), tuples, lists, dicts
/// and tensors by identity, globals by name; storage keys are always fresh strings. Tensors become
/// _rebuild_tensor_v2 calls with a ('storage', torch.<T>Storage, key, location, numel) persistent id.
/// Throws std::invalid_argument for kinds torch.save would not write this way (bare storages, bytes).
std::string pickle_protocol2(const Value& root);

}  // namespace oscar::io::pickle
