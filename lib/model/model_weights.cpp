#include "model/model_weights.h"

#include <cstring>
#include <numeric>

#include "core/error.h"
#include "core/host_tensor.h"

namespace oscar::model {

std::int64_t WeightTensor::numel() const {
  return std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<std::int64_t>());
}

WeightTensor WeightTensor::from_floats(std::vector<float> values, std::vector<std::int64_t> shape) {
  auto owned = std::make_shared<std::vector<float>>(std::move(values));
  WeightTensor tensor;
  tensor.dtype = DType::kFloat32;
  tensor.shape = std::move(shape);
  tensor.data = owned->data();
  tensor.owner = owned;
  return tensor;
}

float WeightTensor::element(std::int64_t i) const {
  const auto* bytes = static_cast<const unsigned char*>(data);
  switch (dtype) {
    case DType::kFloat32: {
      float value;
      std::memcpy(&value, bytes + 4 * i, 4);
      return value;
    }
    case DType::kFloat16:
    case DType::kBFloat16: {
      std::uint16_t half;
      std::memcpy(&half, bytes + 2 * i, 2);
      return dtype == DType::kFloat16 ? float16_to_float(half) : bfloat16_to_float(half);
    }
    default: throw std::logic_error("WeightTensor: unsupported dtype");
  }
}

std::vector<float> WeightTensor::to_floats() const {
  std::vector<float> values(static_cast<std::size_t>(numel()));
  if (dtype == DType::kFloat32) {
    std::memcpy(values.data(), data, values.size() * sizeof(float));
  } else {
    for (std::int64_t i = 0; i < numel(); ++i) values[std::size_t(i)] = element(i);
  }
  return values;
}

void ModelWeights::add(const std::string& name, WeightTensor tensor) { tensors_[name] = std::move(tensor); }

const WeightTensor& ModelWeights::at(const std::string& name) const {
  const auto found = tensors_.find(name);
  if (found == tensors_.end()) throw InputError(source_ + ": missing tensor " + name);
  return found->second;
}

const WeightTensor& ModelWeights::at(const std::string& name, const std::vector<std::int64_t>& shape) const {
  const WeightTensor& tensor = at(name);
  if (tensor.shape != shape) {
    throw InputError(source_ + ": tensor " + name + " has shape " + shape_string(tensor.shape) + ", expected " +
                     shape_string(shape));
  }
  return tensor;
}

std::string layer_tensor_name(int layer, const std::string& suffix) {
  return "model.layers." + std::to_string(layer) + "." + suffix;
}

}  // namespace oscar::model
