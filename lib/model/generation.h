// Text generation on a Decoder: batched prefill of the prompts, then one decode step per new token for all
// unfinished sequences at once.
#pragma once

#include <vector>

#include "model/capture.h"
#include "model/decoder.h"
#include "model/sampling.h"

namespace oscar::model {

struct GenerationOptions {
  int max_new_tokens = 64;
  SamplingOptions sampling;
  std::vector<int> stop_tokens;  ///< generation of a sequence ends after producing one of these
};

/// Generates after each prompt (prompts may differ in length) from an empty cache; returns only the new ids
/// of each sequence (a stop token, when produced, is included). A sequence also ends when its context is
/// full. One sampler per sequence, seeded with seed + index, so a sequence's tokens do not depend on the
/// batch it ran in. `sink` sees prefill and decode activations.
std::vector<std::vector<int>> generate(Decoder& decoder, const std::vector<std::vector<int>>& prompts,
                                       const GenerationOptions& options, CaptureSink* sink = nullptr);

}  // namespace oscar::model
