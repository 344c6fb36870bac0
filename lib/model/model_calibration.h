// Calibrating a llama2.c model directly: run the model over text, feed every layer's captured q/k/v into the
// streaming accumulators of lib/calib, fit the rotations and write the same files as a dump calibration.
//
// No LibTorch types here (the capture sink that sees tensors lives in model_calibration.cpp), so the app can
// include this header without paying for the Torch headers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "calib/calibration_outputs.h"
#include "calib/calibration_state.h"
#include "model/capture.h"
#include "model/decoder.h"
#include "model/llama2c_tokenizer.h"

namespace oscar::model {

struct ModelCalibrationRequest {
  std::string model_path;                 ///< llama2.c .bin
  std::string tokenizer_path;             ///< llama2.c tokenizer .bin
  std::vector<std::string> data_paths;    ///< text files
  std::int64_t max_tokens = 20000;        ///< total tokens over all sequences
  int seq_len = 256;                      ///< tokens per sequence (at most the model's seq_len)
  calib::FitOptions fit;
  std::string out_dir;
  int group_size = 0;                     ///< INT2 group size for the tag; 0 = head_dim
  bool hash_inputs = true;
  nlohmann::json options_record;          ///< the command line, for calibration.json
};

/// The calibration sequences: each file tokenized whole with BOS at its start, cut into consecutive windows
/// of seq_len tokens (a shorter last window of a file is kept), stopping once max_tokens are taken.
std::vector<std::vector<int>> calibration_sequences(const Llama2cTokenizer& tokenizer,
                                                    const std::vector<std::string>& data_paths,
                                                    std::int64_t max_tokens, int seq_len);

/// Runs both passes the method needs over `sequences` and returns the accumulated state (one chunk per
/// sequence, chunk id = sequence index + 1, layer id = layer).
calib::CalibrationState accumulate_model_statistics(Decoder& decoder, const std::vector<std::vector<int>>& sequences,
                                                    const std::string& method);

/// The whole job: load, tokenize, accumulate, fit, write rotation files and calibration.json.
void run_model_calibration(const ModelCalibrationRequest& request);

}  // namespace oscar::model
