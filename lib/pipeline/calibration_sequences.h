// From data files to the token sequences a model calibration runs: prompts (lib/eval) rendered through the
// chat template, tokenized, raw text cut into windows, within a token and prompt budget. Plain C++.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/chat_template.h"
#include "model/tokenizer.h"

namespace oscar::pipeline {

struct SequenceBudget {
  std::int64_t max_tokens = 20000;  ///< prompt tokens over all sequences (generated tokens are added later)
  int max_prompts = 0;              ///< prompts taken from the data files, in order; 0 = no limit
  int seq_len = 512;                ///< longest sequence: raw text is cut into windows of this many tokens,
                                    ///< a chat prompt is truncated to it
};

struct CalibrationSequence {
  std::string source;       ///< "<file>:<prompt index>" (+ "#<window>" for text windows)
  std::vector<int> tokens;
};

/// Reads the files in order and stops once the budget is spent (later files are not read). A chat prompt
/// (JSONL "messages", multiple choice) is rendered with `chat_template` and the generation prompt; with
/// ChatTemplate::kNone its message contents are joined as raw text. Raw text gets BOS when the tokenizer
/// adds it (in every window, so each sequence starts as the model saw its training data). The last
/// sequence is cut so that the total is exactly max_tokens when the data hold that many. Throws
/// oscar::InputError when the files hold no tokens.
std::vector<CalibrationSequence> build_calibration_sequences(const model::Tokenizer& tokenizer,
                                                             model::ChatTemplate chat_template,
                                                             const std::vector<std::string>& data_paths,
                                                             const SequenceBudget& budget);

std::int64_t total_tokens(const std::vector<CalibrationSequence>& sequences);

}  // namespace oscar::pipeline
