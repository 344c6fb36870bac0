// Flat torch.save dicts of named tensors and scalars, e.g. the INT2 packs of oscar-int2:
//   {"codes": uint8 [N, d/4], "scales": float32 [N, groups], "head_dim": 128, "kind": "k", ...}
// Python reads them with torch.load(path, weights_only=True); keys keep their insertion order.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/host_tensor.h"

namespace oscar::io {

struct TensorDict {
  std::vector<std::pair<std::string, HostTensor>> tensors;
  std::vector<std::pair<std::string, std::int64_t>> integers;
  std::vector<std::pair<std::string, double>> reals;
  std::vector<std::pair<std::string, std::string>> strings;

  /// The tensor under `key`; throws InputError("<what>: missing tensor '<key>'").
  const HostTensor& tensor(const std::string& key, const std::string& what) const;
  std::int64_t integer(const std::string& key, const std::string& what) const;
  double real(const std::string& key, const std::string& what) const;
  std::string string(const std::string& key, const std::string& what) const;
};

/// Integers and strings first, then reals, then tensors (storages numbered in that order). Reals are written
/// as 0-d float64 tensors, because torch 1.13's weights_only loader rejects pickled floats; reading maps
/// 0-d float64 tensors back to reals. Written through a temporary file renamed into place.
void write_tensor_dict(const std::string& path, const TensorDict& dict);

/// Throws InputError("<path>: <problem>") unless the file is a dict with string keys whose values are
/// tensors, ints, floats or strings.
TensorDict read_tensor_dict(const std::string& path);

}  // namespace oscar::io
