#include "io/torch_file.h"

#include <stdexcept>

#include "core/error.h"
#include "io/pickle.h"
#include "io/zip_archive.h"

namespace oscar::io {

namespace {

// The pickle of a single-tensor file must be exactly one tensor.
pickle::TensorRef tensor_of(const TorchArchive& archive) {
  const pickle::ValuePtr root = archive.load_pickle();
  if (!root->is(pickle::Kind::kTensor)) {
    archive.zip().fail(std::string("holds a ") + pickle::kind_name(root->kind) + ", expected a single tensor");
  }
  return root->tensor;
}

}  // namespace

TensorHeader read_torch_tensor_header(const std::string& path) {
  const TorchArchive archive(path);
  const pickle::TensorRef tensor = tensor_of(archive);
  // Validates strides and the storage record's size from the central directory: no tensor data is read.
  archive.check_tensor(tensor);
  return TensorHeader{tensor.dtype(), tensor.shape};
}

HostTensor read_torch_tensor(const std::string& path) {
  const TorchArchive archive(path);
  return archive.load_tensor(tensor_of(archive));
}

void write_torch_tensor(const std::string& path, const HostTensor& tensor) {
  for (std::int64_t size : tensor.shape) {
    if (size < 0) throw std::invalid_argument(path + ": negative size in shape " + shape_string(tensor.shape));
  }
  if (tensor.bytes.size() != tensor.nbytes()) {
    throw std::invalid_argument(path + ": tensor has " + std::to_string(tensor.bytes.size()) + " bytes, shape " +
                                shape_string(tensor.shape) + " of " + dtype_name(tensor.dtype) + " needs " +
                                std::to_string(tensor.nbytes()));
  }
  pickle::TensorRef ref;
  ref.storage.dtype = tensor.dtype;
  ref.storage.key = "0";
  ref.storage.numel = tensor.numel();
  ref.shape = tensor.shape;
  ref.stride = pickle::TensorRef::contiguous_stride(tensor.shape);
  const std::string data_pkl = pickle::pickle_protocol2(*pickle::make_tensor(std::move(ref)));
  write_torch_archive(path, data_pkl, {TorchStorageData{"0", tensor.bytes.data(), tensor.bytes.size()}});
}

}  // namespace oscar::io
