#include "pipeline/calibration_sequences.h"

#include <algorithm>

#include "core/error.h"
#include "eval/prompt_sources.h"

namespace oscar::pipeline {
namespace {

/// Appends `ids` as windows of at most seq_len tokens (each led by BOS when the tokenizer uses one), until
/// the budget is spent. Returns the tokens taken.
std::int64_t add_windows(const model::Tokenizer& tokenizer, const std::vector<int>& body, const std::string& source,
                         int seq_len, std::int64_t budget_left, std::vector<CalibrationSequence>& out) {
  const bool bos = tokenizer.adds_bos() && tokenizer.bos() >= 0;
  const std::size_t per_window = std::size_t(seq_len) - (bos ? 1 : 0);
  std::int64_t taken = 0;
  for (std::size_t first = 0, window = 0; first < body.size() && taken < budget_left; first += per_window, ++window) {
    CalibrationSequence sequence;
    sequence.source = source + "#" + std::to_string(window);
    if (bos) sequence.tokens.push_back(tokenizer.bos());
    const std::size_t count = std::min(per_window, body.size() - first);
    sequence.tokens.insert(sequence.tokens.end(), body.begin() + std::ptrdiff_t(first), body.begin() + std::ptrdiff_t(first + count));
    if (std::int64_t(sequence.tokens.size()) > budget_left - taken) sequence.tokens.resize(std::size_t(budget_left - taken));
    taken += std::int64_t(sequence.tokens.size());
    out.push_back(std::move(sequence));
  }
  return taken;
}

}  // namespace

std::vector<CalibrationSequence> build_calibration_sequences(const model::Tokenizer& tokenizer,
                                                             model::ChatTemplate chat_template,
                                                             const std::vector<std::string>& data_paths,
                                                             const SequenceBudget& budget) {
  if (budget.seq_len < 2) throw UsageError("--seq-len must be at least 2");
  if (budget.max_tokens <= 0) throw UsageError("--tokens must be positive");
  std::vector<CalibrationSequence> sequences;
  std::int64_t taken = 0;
  int prompts_used = 0;
  for (const std::string& path : data_paths) {
    for (const eval::Prompt& prompt : eval::load_prompts(path)) {
      if (taken >= budget.max_tokens || (budget.max_prompts > 0 && prompts_used >= budget.max_prompts)) break;
      ++prompts_used;
      if (!prompt.chat) {
        taken += add_windows(tokenizer, tokenizer.encode(prompt.text), prompt.source, budget.seq_len,
                             budget.max_tokens - taken, sequences);
        continue;
      }
      std::vector<int> ids = model::encode_chat(tokenizer, chat_template, prompt.messages);
      ids.resize(std::min<std::size_t>({ids.size(), std::size_t(budget.seq_len), std::size_t(budget.max_tokens - taken)}));
      if (ids.empty()) continue;
      taken += std::int64_t(ids.size());
      sequences.push_back({prompt.source, std::move(ids)});
    }
  }
  if (sequences.empty()) throw InputError("the --data files hold no tokens");
  return sequences;
}

std::int64_t total_tokens(const std::vector<CalibrationSequence>& sequences) {
  std::int64_t tokens = 0;
  for (const auto& sequence : sequences) tokens += std::int64_t(sequence.tokens.size());
  return tokens;
}

}  // namespace oscar::pipeline
