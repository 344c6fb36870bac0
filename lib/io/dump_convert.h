// Converting activation dumps between the SGLang directory layout and our HDF5 file, in either direction.
//
// The destination's name picks the layout: ending in ".h5"/".hdf5" -> HDF5 (values rounded to nearest
// float16; |x| > 65504 is refused), anything else -> an SGLang directory (one torch.save file per tensor,
// in the dtype the source holds: float16 from HDF5, the original dtype from SGLang). Chunk ids, chunk
// boundaries and seq_lens are preserved. Output goes to "<destination>.tmp" and is renamed into place at the
// end, so an interrupted conversion never leaves a half-written destination.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "io/activation_dump.h"

namespace oscar::io {

struct ConvertProgress {
  int layer_id = 0;
  int chunk_id = 0;
  std::size_t chunks_done = 0;   ///< including this one
  std::size_t chunks_total = 0;  ///< over all layers
};
using ConvertProgressCallback = std::function<void(const ConvertProgress&)>;

/// Copies every chunk the source exposes. To carry SGLang's warm-up chunk 0 along (conversions should:
/// the readers skip it by default anyway), open the source with include_chunk0 = true, or use the overload
/// below. Throws UsageError if destination exists, InputError for bad data (e.g. float16 overflow).
void convert_dump(const ActivationDump& source, const std::string& destination,
                  const ConvertProgressCallback& progress = {});

/// Opens source_path with include_chunk0 forced to true (other options, e.g. head_dim_hint, as given)
/// and converts it as above.
void convert_dump(const std::string& source_path, const std::string& destination,
                  const DumpOpenOptions& source_options = {}, const ConvertProgressCallback& progress = {});

}  // namespace oscar::io
