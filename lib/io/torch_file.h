// PyTorch `torch.save` files (zip container + pickle protocol 2) holding one tensor.
//
// This is the layout of every chunk of an SGLang activation dump. Reading accepts bfloat16, float16,
// float32, float64, int32 and int64 storages, any storage offset, C-contiguous strides. Writing produces
// the same zip layout as Python's torch.save (64-byte aligned records, zip64 end records).
#pragma once

#include <string>
#include <vector>

#include "core/host_tensor.h"

namespace oscar::io {

/// Shape and dtype of the tensor in a torch.save file, from its pickle alone (no tensor data is read).
struct TensorHeader {
  DType dtype = DType::kFloat32;
  std::vector<std::int64_t> shape;
};

/// Throws InputError("<path>: <problem>") on anything malformed or unsupported.
TensorHeader read_torch_tensor_header(const std::string& path);
HostTensor read_torch_tensor(const std::string& path);

/// Writes through a temporary file renamed into place, so a failure leaves no partial file.
void write_torch_tensor(const std::string& path, const HostTensor& tensor);

}  // namespace oscar::io
