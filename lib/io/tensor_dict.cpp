#include "io/tensor_dict.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "io/pickle.h"
#include "io/zip_archive.h"

namespace oscar::io {

namespace {

using pickle::ValuePtr;

template <typename T>
const T& find_entry(const std::vector<std::pair<std::string, T>>& entries, const std::string& key, const std::string& what,
                    const char* kind) {
  const auto found = std::find_if(entries.begin(), entries.end(), [&](const auto& entry) { return entry.first == key; });
  if (found == entries.end()) throw InputError(what + ": missing " + kind + " '" + key + "'");
  return found->second;
}

ValuePtr tensor_value(const std::string& storage_key, const HostTensor& tensor) {
  pickle::TensorRef ref;
  ref.storage.dtype = tensor.dtype;
  ref.storage.key = storage_key;
  ref.storage.location = "cpu";
  ref.storage.numel = tensor.numel();
  ref.shape = tensor.shape;
  ref.stride = pickle::TensorRef::contiguous_stride(tensor.shape);
  return pickle::make_tensor(std::move(ref));
}

/// Reals travel as 0-d float64 tensors: torch 1.13's weights_only loader rejects pickled floats (BINFLOAT).
HostTensor real_tensor(double value) {
  HostTensor tensor;
  tensor.dtype = DType::kFloat64;
  tensor.bytes.resize(sizeof value);
  std::memcpy(tensor.bytes.data(), &value, sizeof value);
  return tensor;
}

}  // namespace

const HostTensor& TensorDict::tensor(const std::string& key, const std::string& what) const {
  return find_entry(tensors, key, what, "tensor");
}
std::int64_t TensorDict::integer(const std::string& key, const std::string& what) const {
  return find_entry(integers, key, what, "integer");
}
double TensorDict::real(const std::string& key, const std::string& what) const {
  return find_entry(reals, key, what, "number");
}
std::string TensorDict::string(const std::string& key, const std::string& what) const {
  return find_entry(strings, key, what, "string");
}

void write_tensor_dict(const std::string& path, const TensorDict& dict) {
  const ValuePtr root = pickle::make_dict();
  for (const auto& [key, value] : dict.integers) root->add(pickle::make_string(key), pickle::make_int(value));
  for (const auto& [key, value] : dict.strings) root->add(pickle::make_string(key), pickle::make_string(value));
  std::vector<std::pair<std::string, HostTensor>> tensors;
  for (const auto& [key, value] : dict.reals) tensors.emplace_back(key, real_tensor(value));
  tensors.insert(tensors.end(), dict.tensors.begin(), dict.tensors.end());
  std::vector<TorchStorageData> storages;
  for (const auto& [key, tensor] : tensors) {
    if (tensor.bytes.size() != tensor.nbytes()) throw std::invalid_argument(key + ": tensor bytes do not match its shape");
    const std::string storage_key = std::to_string(storages.size());
    storages.push_back({storage_key, tensor.bytes.data(), tensor.bytes.size()});
    root->add(pickle::make_string(key), tensor_value(storage_key, tensor));
  }
  write_torch_archive(path, pickle::pickle_protocol2(*root), storages);
}

TensorDict read_tensor_dict(const std::string& path) {
  const TorchArchive archive(path);
  const ValuePtr root = archive.load_pickle();
  if (!root->is(pickle::Kind::kDict)) throw InputError(path + ": not a dict");
  TensorDict dict;
  for (const auto& [key, value] : root->entries) {
    if (!key->is(pickle::Kind::kString)) throw InputError(path + ": a key is not a string");
    switch (value->kind) {
      case pickle::Kind::kTensor: {
        HostTensor tensor = archive.load_tensor(value->tensor, key->text);
        if (tensor.shape.empty() && tensor.dtype == DType::kFloat64) {
          dict.reals.emplace_back(key->text, tensor.element_as_double(0));
        } else {
          dict.tensors.emplace_back(key->text, std::move(tensor));
        }
        break;
      }
      case pickle::Kind::kInt: dict.integers.emplace_back(key->text, value->integer); break;
      case pickle::Kind::kFloat: dict.reals.emplace_back(key->text, value->real); break;
      case pickle::Kind::kString: dict.strings.emplace_back(key->text, value->text); break;
      default: throw InputError(path + ": '" + key->text + "' holds a " + pickle::kind_name(value->kind));
    }
  }
  return dict;
}

}  // namespace oscar::io
