// Streaming an activation dump into a CalibrationState, layer by layer and chunk by chunk.
//
// Memory holds one chunk of one layer plus the statistics (a few d×d matrices per KV head), whatever
// the token count. sst needs C̄_Q before its weights exist, so it reads K/V a second time after the
// first pass over a layer has finished (re-reading from disk costs less than keeping K/V in memory).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "calib/calibration_state.h"
#include "calib/chunk_accumulation.h"
#include "io/activation_dump.h"

namespace oscar::calib {

enum class Passes { kFirst, kSecond, kBoth };

struct AccumulationOptions {
  std::vector<int> layer_ids;                        ///< layers of the dump to read
  std::optional<std::pair<int, int>> chunk_range;    ///< [first, last) chunk ids: a token shard
  Passes passes = Passes::kBoth;
  int kv_head_offset = 0;                            ///< global index of the dump's first KV head (TP rank)
  int threads = 1;
  NonfinitePolicy nonfinite = NonfinitePolicy::kError;
  std::string checkpoint_path;                       ///< "" = no checkpoints
  int checkpoint_every_chunks = 0;                   ///< save after this many chunks (0 = only at layer ends)
  const CalibrationState* query_reference = nullptr; ///< pass 2 alone: take C̄_Q from this merged state
};

struct AccumulationProgress {
  std::int64_t steps_done = 0;   ///< (chunk, pass) steps finished, resumed ones included
  std::int64_t steps_total = 0;
  std::int64_t tokens_read = 0;  ///< tokens read by this process
  int layer_id = 0;
  int pass = 1;
};

using ProgressCallback = std::function<void(const AccumulationProgress&)>;

/// Adds the dump's chunks to state (chunks already recorded in state, e.g. from a checkpoint, are
/// skipped). state.geometry and state.mask must be set by the caller. Throws InputError naming the
/// dump, layer and chunk on bad data.
void accumulate_dump(const io::ActivationDump& dump, const AccumulationOptions& options, CalibrationState& state,
                     const ProgressCallback& progress);

/// Every chunk of the dump with its token and sequence counts: the identity of the dump in a state.
std::vector<DumpChunk> describe_dump(const io::ActivationDump& dump);

/// The chunk ids of a layer that fall into options.chunk_range.
std::vector<int> selected_chunks(const io::ActivationDump& dump, int layer_id, const AccumulationOptions& options);

}  // namespace oscar::calib
