// What oscar-verify measures: every method on every evaluation file, against the full-precision reference.
//
//  - Text files: documents (split at "<|endoftext|>", BOS first), after the first skip_tokens tokens, cut
//    into disjoint windows of `window` tokens (BOS in front of a window that starts inside a document); each window is scored teacher-forced with every position a decode step, so tokens beyond the
//    sink and recent windows are read back from INT2. Per scored token: the method's negative log-likelihood,
//    KL(fp ‖ method) over the whole vocabulary, and whether both distributions have the same top-1 token.
//  - Multiple-choice files: the simple-evals prompt through the chat template is the prefill; then
//    "Answer:" ("\n\nAnswer:" without a template) is decoded through the method's cache and the answer
//    letters (" A", " B", …) are scored by log-likelihood; with generate_tokens > 0 the method instead
//    generates that many tokens after the prompt and the answer is read with simple-evals' regex. Questions
//    that do not fit the model's context are skipped and counted.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/chat_template.h"
#include "model/sampling.h"
#include "model/tokenizer.h"
#include "verify/method_scorer.h"

namespace oscar::verify {

struct EvaluationOptions {
  int window = 512;                  ///< text window, capped at the model's context
  std::int64_t skip_tokens = 0;      ///< text: tokens skipped first, e.g. those calibration read
  std::int64_t max_text_tokens = 0;  ///< text: tokens per file (0: all)
  int limit = 0;                     ///< multiple choice: questions per file (0: all)
  model::ChatTemplate chat_template = model::ChatTemplate::kNone;
  int generate_tokens = 0;           ///< > 0: answer by generation instead of log-likelihood
  model::SamplingOptions sampling;   ///< for generation (temperature 0: greedy)
};

/// One method on one file.
struct MethodMetrics {
  // Text.
  std::int64_t text_tokens = 0;
  double nll_sum = 0;      ///< natural log
  double kl_sum = 0;       ///< Σ KL(fp ‖ method) over scored tokens (also the answer positions of
                           ///< log-likelihood multiple choice, counted in kl_positions)
  double kl_max = 0;
  std::int64_t kl_positions = 0;
  std::int64_t top1_agree = 0;
  // Multiple choice (one entry per question, in file order).
  std::vector<int> predicted;  ///< -1: no answer found in a generation
  // Storage.
  double stored_bits = 0;            ///< Σ over evaluated sequences of the bits the method stores per KV element
  std::int64_t stored_tokens = 0;    ///< Σ of their lengths
};

struct DatasetResult {
  std::string path;
  bool multiple_choice = false;
  std::vector<std::string> question_ids;
  std::vector<int> answers;      ///< correct index per question
  int skipped = 0;               ///< questions longer than the context
  std::int64_t windows = 0;      ///< text windows
  std::vector<MethodMetrics> methods;  ///< in the order of the scorers
};

struct EvaluationResult {
  std::vector<DatasetResult> datasets;
  std::int64_t forward_tokens = 0;  ///< tokens run teacher-forced over all methods (throughput)
  double seconds = 0;
};

/// Progress: (done, total) in sequences, and a label.
using EvaluationProgress = std::function<void(std::int64_t done, std::int64_t total, std::int64_t tokens)>;

/// Runs every file with every scorer. `reference` is the fp scorer that KL, top-1 and flips are measured
/// against (a scorer whose method is fp reuses its results). Throws oscar::InputError for a bad file.
EvaluationResult evaluate(const std::vector<std::string>& files, const model::Tokenizer& tokenizer,
                          MethodScorer& reference, std::vector<MethodScorer>& scorers,
                          const EvaluationOptions& options, const EvaluationProgress& progress = {});

}  // namespace oscar::verify
