// The jobs of oscar-calibrate, one function each, so the app only parses options:
//   calibrate  : dump -> state -> rotation files + calibration.json (with optional checkpoint/resume)
//   hadamard   : no input -> H for every layer
//   accumulate : dump shard -> state file          merge : state files -> rotation files (+ state)
#pragma once

#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/calibration_outputs.h"
#include "calib/chunk_accumulation.h"
#include "calib/dump_accumulation.h"

namespace oscar::calib {

/// Which part of which dump to read, and how.
struct DumpRequest {
  std::string dump_path;
  bool include_chunk0 = false;
  int head_dim_hint = 0;                          ///< for dumps of 2-D [T, H*d] tensors
  std::string layers;                             ///< "A:B" (half-open), "A:", "A"; "" = all
  std::string chunks;                             ///< chunk ids, same syntax; "" = all (a token shard otherwise)
  int tp_rank = 0, tp_size = 1;                   ///< the dump holds this rank's heads
  int threads = 1;
  NonfinitePolicy nonfinite = NonfinitePolicy::kError;
  bool show_progress = true;
};

struct CalibrateRequest {
  DumpRequest input;
  FitOptions fit;
  std::string out_dir;
  int group_size = 0;                 ///< INT2 group size for the tag; 0 = head_dim
  std::string checkpoint_path;        ///< "" = none
  int checkpoint_every_chunks = 0;
  bool resume = false;                ///< continue from checkpoint_path when it exists
  bool hash_inputs = true;
  nlohmann::json options_record;      ///< the command line, for calibration.json
};

struct AccumulateRequest {
  DumpRequest input;
  std::string method = "qqt_sst";
  Passes passes = Passes::kBoth;
  std::string query_state_path;       ///< with Passes::kSecond: merged first-pass state
  std::string state_path;             ///< output
};

struct MergeRequest {
  std::vector<std::string> state_paths;
  FitOptions fit;
  std::string out_dir;                ///< "" = write no rotations
  std::string state_out_path;         ///< "" = write no merged state
  bool allow_partial = false;         ///< fit even when shards are missing (layers, chunks, passes)
  int group_size = 0;
  nlohmann::json options_record;
};

struct HadamardRequest {
  int num_layers = 0;                 ///< 0 = from the dump
  int head_dim = 0;                   ///< 0 = from the dump
  std::string dump_path;              ///< optional: where to take layer count and head_dim from
  std::string out_dir;
  nlohmann::json options_record;
};

/// Parses "A:B" (half-open), "A:" (to the end) or "A" into [first, last). Throws UsageError naming
/// `option` when malformed.
std::pair<int, int> parse_id_range(const std::string& spec, const std::string& option);

/// The layers of `available` selected by a --layers value ("" = all). Throws UsageError when malformed
/// or when it selects nothing.
std::vector<int> parse_layer_selection(const std::string& spec, const std::vector<int>& available);

void run_calibrate(const CalibrateRequest& request);
void run_hadamard(const HadamardRequest& request);
void run_accumulate(const AccumulateRequest& request);
void run_merge(const MergeRequest& request);

}  // namespace oscar::calib
