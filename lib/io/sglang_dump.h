// The SGLang dumper's directory layout: `<dump>/layer_<L>/{q,k,v,seq_lens}/<chunk>.pt`.
//
// Each file is one tensor written by Python torch.save: q [T, Hq, d], k and v [T, Hkv, d] in bfloat16,
// float16 or float32 (2-D [T, H*d] is accepted when DumpOpenOptions::head_dim_hint is set), seq_lens int32
// [n_seqs] (the seq_lens directory is optional, and so is each of its files). Opening validates the whole
// dump from the pickle headers alone (no tensor data is read), so a bad dump fails in seconds, before a long
// calibration starts; read() checks the data against those headers again, because files can change later.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/activation_dump.h"
#include "io/dump_index.h"

namespace oscar::io {

/// What SglangDump records about a chunk at open.
struct SglangChunk {
  std::int64_t tokens = 0;
  std::vector<std::int32_t> seq_lens;  ///< read at open (tiny); empty when the chunk has none
};

/// Fills the shared chunk index (dump_index.h) while validating the directory at open; read() loads one file.
class SglangDump final : public IndexedActivationDump<SglangChunk> {
 public:
  /// Scans and validates the directory; throws InputError("<file>: <problem>").
  SglangDump(std::string path, const DumpOpenOptions& options);

  HostTensor read(int layer_id, int chunk_id, Projection projection) const override;
  std::string source_dtype() const override { return dtype_name(dtype_); }

  /// `<dump>/layer_<L>/<sub>/<chunk>.pt`, sub being "q", "k", "v" or "seq_lens".
  std::string chunk_file(int layer_id, int chunk_id, const std::string& sub) const;

 private:
  /// Shape and origin of the first q, k and v files seen: every other file must agree with them.
  struct ReferenceShape {
    std::vector<std::int64_t> shape;     ///< as stored (2-D or 3-D)
    std::string file;
  };

  void scan_layers();
  void scan_layer(int layer_id);
  std::int64_t validate_chunk(int layer_id, int chunk_id);
  std::vector<std::int64_t> heads_and_dim(const std::string& file, const std::vector<std::int64_t>& shape) const;
  void check_against_reference(Projection projection, const std::string& file, const std::vector<std::int64_t>& shape,
                               DType dtype);
  void read_seq_lens(int layer_id, int chunk_id, SglangChunk& chunk) const;

  DumpOpenOptions options_;
  DType dtype_ = DType::kBFloat16;
  std::string dtype_file_;               ///< the file dtype_ was taken from ("" before the first)
  std::map<Projection, ReferenceShape> reference_shapes_;
};

}  // namespace oscar::io
