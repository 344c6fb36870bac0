// Our single-file activation dump: HDF5, float16, chunk boundaries kept. Layout in docs/FORMATS.md.
//
//   /                     attributes format, format_version, model, num_layers, num_q_heads, num_kv_heads,
//                         head_dim, token_count [num_layers], tool_version, source_dtype
//   /layer_<L>/q          float16 [T, Hq, d]   (chunked, extendible along T)
//   /layer_<L>/k, v       float16 [T, Hkv, d]
//   /layer_<L>/chunk_offsets     int64 [n_chunks + 1]  tokens of chunk i are rows [off[i], off[i+1])
//   /layer_<L>/chunk_ids         int32 [n_chunks]      ascending
//   /layer_<L>/seq_lens          int32 [n_seqs]        all chunks' seq_lens, concatenated
//   /layer_<L>/seq_lens_offsets  int64 [n_chunks + 1]  seq_lens of chunk i are [off[i], off[i+1])
//
// The float16 type is IEEE binary16 built like h5py's (so h5py reads dtype float16). Values are converted to
// float16 here, in C++, and written with memory type == file type: HDF5 1.10.8's own float32 -> float16
// conversion corrupts values.
//
// HDF5 (the Debian build) is not thread-safe: every HDF5 call in this file holds hdf5_library_mutex(), and
// other code that calls HDF5 from several threads should take it too.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "io/activation_dump.h"
#include "io/dump_index.h"

namespace oscar::io {

/// Serialises calls into the (not thread-safe) HDF5 library across the process.
std::mutex& hdf5_library_mutex();

namespace hdf5_format {
inline constexpr const char* kFormatName = "oscar-activation-dump";
inline constexpr int kFormatVersion = 1;
inline constexpr double kFloat16Max = 65504.0;
}  // namespace hdf5_format

struct Hdf5DumpMetadata {
  std::string model;         ///< free-form, "" when unknown
  int num_layers = 0;        ///< layers 0..num_layers-1; each needs at least one chunk by finish()
  DumpGeometry geometry;
  std::string source_dtype;  ///< dtype_name() of the captured tensors before conversion to float16
};

/// Writes an HDF5 dump chunk by chunk into "<path>.tmp", renamed to path by finish(). Destroying the
/// writer without finish() removes the temporary file, so an interrupted conversion leaves nothing behind.
class Hdf5DumpWriter {
 public:
  /// Throws InputError if the geometry is invalid or the temporary file cannot be created.
  Hdf5DumpWriter(std::string path, Hdf5DumpMetadata metadata);
  ~Hdf5DumpWriter();
  Hdf5DumpWriter(const Hdf5DumpWriter&) = delete;
  Hdf5DumpWriter& operator=(const Hdf5DumpWriter&) = delete;

  /// Appends one chunk of one layer. q [T, Hq, d], k/v [T, Hkv, d] in float16 (stored as is), bfloat16,
  /// float32 or float64 (rounded to nearest float16). Chunk ids of a layer must ascend. seq_lens may be
  /// empty; otherwise they must sum to T. A finite or infinite value with |x| > 65504 in a non-float16 input
  /// is an InputError naming layer and chunk (float16 cannot hold it); NaN passes through.
  void append_chunk(int layer_id, int chunk_id, const HostTensor& q, const HostTensor& k, const HostTensor& v,
                    const std::vector<std::int32_t>& seq_lens);

  /// Writes the chunk index and the root attributes, closes the file and renames it into place.
  void finish();

  const std::string& path() const { return path_; }

 private:
  struct State;
  std::string path_;
  std::unique_ptr<State> state_;
};

/// What Hdf5Dump records about a chunk at open, from the layer's chunk index.
struct Hdf5Chunk {
  std::int64_t first_token = 0;  ///< first row of the chunk in the layer's q, k and v datasets
  std::int64_t tokens = 0;
  std::vector<std::int32_t> seq_lens;
};

/// Reader. Validates attributes, shapes and chunk index at open (filling the shared chunk index of
/// dump_index.h); read() fetches one chunk as a hyperslab.
/// Chunk 0 (SGLang's warm-up chunk, kept by conversions) is skipped unless options.include_chunk0.
class Hdf5Dump final : public IndexedActivationDump<Hdf5Chunk> {
 public:
  /// Throws InputError("<path>: <problem>") for anything malformed.
  Hdf5Dump(std::string path, const DumpOpenOptions& options);
  ~Hdf5Dump() override;

  /// float16 [T, H, d].
  HostTensor read(int layer_id, int chunk_id, Projection projection) const override;
  std::string model_name() const override { return model_; }
  std::string source_dtype() const override { return source_dtype_; }

 private:
  struct File;

  void load();
  void load_layer(int layer_id);

  DumpOpenOptions options_;
  std::unique_ptr<File> file_;
  std::string model_;
  std::string source_dtype_;
  std::vector<std::int64_t> token_counts_;  ///< root attribute token_count, per layer
};

}  // namespace oscar::io
