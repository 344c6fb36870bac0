// Calibrating a model directly: load it (llama2.c, GGUF or Hugging Face), build calibration sequences from the
// data files, optionally extend them with the model's own generations, run the forward with a capture sink
// that streams every layer's q/k/v into the accumulators of lib/calib, fit the rotations and write the same
// files as a dump calibration, into <out>/<seq<T>_prompt<N>_group<G>>/.
//
// No LibTorch types here (the capture sinks live in model_calibration.cpp), so the app can include this
// header without paying for the Torch headers.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/calibration_outputs.h"
#include "calib/calibration_state.h"
#include "model/decoder.h"
#include "pipeline/calibration_sequences.h"

namespace oscar::pipeline {

struct ModelCalibrationRequest {
  std::string model_path;                ///< llama2.c .bin, .gguf, or a Hugging Face directory
  std::string tokenizer_path;            ///< llama2.c only; default: beside the model
  std::vector<std::string> data_paths;   ///< text, JSONL, GPQA/MMLU CSV, ARC JSONL
  SequenceBudget budget{20000, 0, 0};    ///< seq_len 0 = the model's context, at most 4096
  int generate_tokens = 0;               ///< model-generated tokens appended to every prompt (greedy)
  std::string chat_template = "auto";    ///< auto | chatml | llama3 | none
  model::DecoderOptions decoder;
  int batch_size = 4;                    ///< sequences per forward
  std::string dump_path;                 ///< optional HDF5 activation dump of the first pass
  calib::FitOptions fit;
  std::string out_dir;                   ///< the tag directory is created inside
  int group_size = 0;                    ///< INT2 group size for the tag; 0 = head_dim
  bool hash_inputs = true;
  bool progress = true;
  nlohmann::json options_record;         ///< the command line, for calibration.json
};

/// Runs both passes the method needs over `sequences` (batched prefill, batch_size rows per forward) and
/// returns the accumulated state: one chunk per sequence (chunk id = index + 1), layer id = layer.
/// `on_tokens(done, total)` reports progress in tokens (both passes count).
calib::CalibrationState accumulate_model_statistics(model::Decoder& decoder, const std::vector<std::vector<int>>& sequences,
                                                    const std::string& method, int batch_size,
                                                    const std::string& dump_path = "",
                                                    const std::function<void(std::int64_t, std::int64_t)>& on_tokens = {});

/// The whole job; returns the tag directory it wrote.
std::string run_model_calibration(const ModelCalibrationRequest& request);

}  // namespace oscar::pipeline
