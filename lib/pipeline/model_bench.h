// Forward and capture speed of a model on the CPU (or GPU): prefill and decode tokens/s, and what
// calibrating costs on top of a plain forward. Random token ids, so any model (a random-weight one too)
// can be measured without data.
#pragma once

#include <cstdint>

#include "model/decoder.h"

namespace oscar::pipeline {

struct ModelBenchOptions {
  int sequences = 4;       ///< prefill/calibration sequences
  int seq_len = 256;       ///< tokens per sequence
  int batch_size = 1;      ///< sequences per forward
  int decode_tokens = 32;  ///< decode steps after a seq_len prefill
  std::uint64_t seed = 0;
};

struct ModelBenchResult {
  double prefill_tokens_per_second = 0;
  double decode_tokens_per_second = 0;
  int decode_context = 0;            ///< tokens in the cache before the decode steps (seq_len, or less to fit)
  double calibration_seconds = 0;    ///< qqt_sst: two capture passes
  double plain_forward_seconds = 0;  ///< one pass over the same sequences without capture
  /// Extra time per pass that capture and accumulation add: calibration / (2 × plain) − 1.
  double capture_overhead() const { return plain_forward_seconds > 0 ? calibration_seconds / (2 * plain_forward_seconds) - 1 : 0; }
};

ModelBenchResult bench_model(model::Decoder& decoder, const ModelBenchOptions& options);

}  // namespace oscar::pipeline
