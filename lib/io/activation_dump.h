// Captured attention activations, read chunk by chunk: the input of streaming calibration.
//
// Two on-disk layouts implement this interface:
//  - the SGLang dumper's directory `<dump>/layer_<L>/{q,k,v,seq_lens}/<chunk>.pt` (sglang_dump.h);
//  - our single HDF5 file (hdf5_dump.h, documented in docs/FORMATS.md).
// Tensors come back as [T, H, d] in the dtype stored on disk; readers never widen whole chunks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/host_tensor.h"

namespace oscar::io {

enum class Projection { kQuery, kKey, kValue };

/// "q", "k", "v": the sub-directory / dataset name of each projection.
const char* projection_name(Projection projection);

struct DumpGeometry {
  int num_q_heads = 0;   ///< Hq
  int num_kv_heads = 0;  ///< Hkv; Hq must be a multiple of it
  int head_dim = 0;      ///< d
};

struct DumpOpenOptions {
  bool include_chunk0 = false;  ///< chunk 0 of an SGLang dump is a 6-token warm-up batch, skipped by default
  int head_dim_hint = 0;        ///< needed only for dumps that store 2-D [T, H*d] tensors
};

class ActivationDump {
 public:
  virtual ~ActivationDump() = default;

  virtual const std::string& path() const = 0;
  /// Ascending layer ids. Opening already checked that they are 0..N-1 with no gap.
  virtual const std::vector<int>& layer_ids() const = 0;
  /// The same for every layer and chunk (checked when the dump is opened).
  virtual const DumpGeometry& geometry() const = 0;
  /// Chunk ids of a layer in numeric order (chunk 0 left out unless include_chunk0).
  virtual const std::vector<int>& chunk_ids(int layer_id) const = 0;
  /// Token count of a chunk (equal for q, k and v, checked at open).
  virtual std::int64_t chunk_tokens(int layer_id, int chunk_id) const = 0;
  /// [T, H, d] tensor of one projection of one chunk.
  virtual HostTensor read(int layer_id, int chunk_id, Projection projection) const = 0;
  /// Per-sequence token counts of a chunk; empty when the dump has none.
  virtual std::vector<std::int32_t> seq_lens(int layer_id, int chunk_id) const = 0;
  /// Free-form model name recorded in the dump ("" when unknown).
  virtual std::string model_name() const { return {}; }
  /// dtype_name() of the tensors as captured ("bfloat16", ...), before any conversion (an HDF5 dump stores
  /// float16 but remembers what it was converted from); "" when unknown.
  virtual std::string source_dtype() const { return {}; }
};

/// True for the file names of our HDF5 layout: ending in ".h5" or ".hdf5".
bool is_hdf5_dump_path(const std::string& path);

/// Opens a dump directory (SGLang layout) or an .h5 file (our layout), validating every shape first.
/// Throws InputError naming the file and the problem.
std::unique_ptr<ActivationDump> open_activation_dump(const std::string& path, const DumpOpenOptions& options);

}  // namespace oscar::io
