// A dense, row-major tensor in host memory: the unit that dump readers hand to the accumulators.
#pragma once

#include <cstdint>
#include <numeric>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace oscar {

struct HostTensor {
  DType dtype = DType::kFloat32;
  std::vector<std::int64_t> shape;   ///< outermost first
  std::vector<std::uint8_t> bytes;   ///< numel() * dtype_size(dtype), C-contiguous, little-endian

  std::int64_t numel() const {
    return std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<std::int64_t>());
  }
  std::size_t nbytes() const { return std::size_t(numel()) * dtype_size(dtype); }

  /// Element i (flat index) widened to double; dtype must be a floating type.
  double element_as_double(std::int64_t i) const;

  /// Copies elements [first, first + count) into out, widened to double.
  void copy_to_double(std::int64_t first, std::int64_t count, double* out) const;
};

/// "[20000, 8, 128]".
std::string shape_string(const std::vector<std::int64_t>& shape);

}  // namespace oscar
