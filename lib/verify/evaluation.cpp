#include "verify/evaluation.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "eval/csv.h"
#include "eval/multiple_choice.h"
#include "eval/perplexity.h"
#include "eval/prompt_sources.h"
#include "verify/statistics.h"

namespace oscar::verify {
namespace {

/// A multiple-choice question as token ids.
struct ChoiceItem {
  std::vector<int> prompt;                    ///< the prefill: chat-rendered simple-evals prompt
  std::vector<int> scored;                    ///< prompt + "Answer:" + the letters' common first tokens
  std::vector<std::vector<int>> suffixes;     ///< per choice, the letter's remaining tokens (≥ 1)
  int choices = 0;
};

/// A file ready to run: text windows or questions.
struct PreparedFile {
  DatasetResult result;
  std::vector<std::vector<int>> windows;
  std::vector<ChoiceItem> questions;
};

std::vector<std::vector<int>> text_windows(const model::Tokenizer& tokenizer, const std::string& path,
                                           const EvaluationOptions& options, int window) {
  const std::vector<std::vector<int>> documents = eval::tokenize_documents(tokenizer, eval::read_text_file(path));
  std::vector<std::vector<int>> windows;
  std::int64_t skip = options.skip_tokens;
  std::int64_t budget = options.max_text_tokens > 0 ? options.max_text_tokens : INT64_MAX;
  for (const std::vector<int>& ids : documents) {
    const auto size = static_cast<std::int64_t>(ids.size());
    const std::int64_t begin = std::min(skip, size);
    skip -= begin;
    // A window that starts inside a document gets BOS in front: the models were trained on BOS-led
    // sequences and use its position as an attention sink, as a served request does.
    const bool add_bos = tokenizer.adds_bos() && tokenizer.bos() >= 0;
    for (std::int64_t first = begin; first + 1 < size && budget > 1;) {
      const bool bos = add_bos && first > 0;
      const std::int64_t n = std::min({size - first, static_cast<std::int64_t>(window) - (bos ? 1 : 0), budget});
      std::vector<int> tokens(bos ? 1 : 0, tokenizer.bos());
      tokens.insert(tokens.end(), ids.begin() + first, ids.begin() + first + n);
      if (tokens.size() >= 2) windows.push_back(std::move(tokens));
      budget -= n;
      first += n;
    }
  }
  if (windows.empty()) throw InputError(path + ": no text to score after skipping " + std::to_string(options.skip_tokens) + " tokens");
  return windows;
}

std::vector<int> concat(std::vector<int> head, const std::vector<int>& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

/// Tokens of the question's prompt and answer letters; false when it does not fit the context.
bool prepare_question(const eval::MultipleChoiceQuestion& question, const model::Tokenizer& tokenizer,
                      const EvaluationOptions& options, int context, ChoiceItem& item) {
  const std::vector<model::ChatMessage> messages = {{"user", eval::render_simple_evals(question)}};
  item.prompt = model::encode_chat(tokenizer, options.chat_template, messages);
  item.choices = static_cast<int>(question.choices.size());
  if (options.generate_tokens > 0) return static_cast<int>(item.prompt.size()) < context;
  const char* answer_prefix = options.chat_template == model::ChatTemplate::kNone ? "\n\nAnswer:" : "Answer:";
  std::vector<std::vector<int>> letters;
  for (int i = 0; i < item.choices; ++i) letters.push_back(tokenizer.encode(std::string(" ") + eval::answer_letter(i)));
  // The letters' shared leading tokens (a lone space piece, say) belong to the scored sequence.
  size_t common = 0;
  while (std::all_of(letters.begin(), letters.end(), [&](const auto& l) { return l.size() > common + 1 && l[common] == letters[0][common]; })) ++common;
  item.scored = concat(item.prompt, tokenizer.encode(answer_prefix));
  item.scored.insert(item.scored.end(), letters[0].begin(), letters[0].begin() + static_cast<std::ptrdiff_t>(common));
  size_t longest = 0;
  for (const auto& letter : letters) {
    item.suffixes.emplace_back(letter.begin() + static_cast<std::ptrdiff_t>(common), letter.end());
    longest = std::max(longest, item.suffixes.back().size());
  }
  return item.scored.size() + longest - 1 <= static_cast<size_t>(context);
}

PreparedFile prepare_file(const std::string& path, const model::Tokenizer& tokenizer, const EvaluationOptions& options,
                          int context, size_t methods) {
  PreparedFile file;
  file.result.path = path;
  file.result.methods.resize(methods);
  const eval::DataKind kind = eval::detect_data_kind(path);
  if (kind == eval::DataKind::kJsonl) {
    throw InputError(path + ": JSONL prompts (\"text\"/\"messages\") are calibration data; evaluate text files or multiple-choice sets");
  }
  if (kind == eval::DataKind::kText) {
    file.windows = text_windows(tokenizer, path, options, std::min(options.window, context));
    file.result.windows = static_cast<std::int64_t>(file.windows.size());
    return file;
  }
  file.result.multiple_choice = true;
  std::vector<eval::MultipleChoiceQuestion> questions = eval::load_multiple_choice(path);
  if (options.limit > 0 && questions.size() > static_cast<size_t>(options.limit)) questions.resize(static_cast<size_t>(options.limit));
  for (const auto& question : questions) {
    ChoiceItem item;
    if (!prepare_question(question, tokenizer, options, context, item)) {
      ++file.result.skipped;
      continue;
    }
    file.questions.push_back(std::move(item));
    file.result.question_ids.push_back(question.id);
    file.result.answers.push_back(question.answer);
  }
  if (file.questions.empty()) throw InputError(path + ": no question fits the model's context of " + std::to_string(context) + " tokens");
  return file;
}

/// KL and top-1 agreement of one position against the reference.
void compare_position(const float* reference, const float* method, int vocab, MethodMetrics& metrics) {
  const double kl = kl_divergence(reference, method, vocab);
  metrics.kl_sum += kl;
  metrics.kl_max = std::max(metrics.kl_max, kl);
  metrics.kl_positions += 1;
  metrics.top1_agree += argmax(reference, vocab) == argmax(method, vocab) ? 1 : 0;
}

class FileRunner {
 public:
  FileRunner(MethodScorer& reference, std::vector<MethodScorer>& scorers, const model::Tokenizer& tokenizer,
             const EvaluationOptions& options, int vocab)
      : reference_(reference), scorers_(scorers), tokenizer_(tokenizer), options_(options), vocab_(vocab) {}

  std::int64_t forward_tokens = 0;

  void score_window(const std::vector<int>& window, DatasetResult& result) {
    const std::vector<float> reference = run(reference_, window, 0);
    for (size_t m = 0; m < scorers_.size(); ++m) {
      const std::vector<float> own = scorers_[m].method().full_precision ? reference : run(scorers_[m], window, 0);
      MethodMetrics& metrics = result.methods[m];
      for (size_t t = 0; t + 1 < window.size(); ++t) {
        const size_t row = t * static_cast<size_t>(vocab_);
        metrics.nll_sum -= own[row + static_cast<size_t>(window[t + 1])];
        metrics.text_tokens += 1;
        compare_position(&reference[row], &own[row], vocab_, metrics);
      }
      add_storage(scorers_[m], window.size(), metrics);
    }
  }

  void score_question(const ChoiceItem& item, size_t index, DatasetResult& result) {
    if (options_.generate_tokens > 0) return generate_answer(item, index, result);
    const int prefill = static_cast<int>(item.prompt.size());
    const std::vector<float> reference = run(reference_, item.scored, prefill);
    const size_t last = (item.scored.size() - 1) * static_cast<size_t>(vocab_);
    for (size_t m = 0; m < scorers_.size(); ++m) {
      const std::vector<float> own = scorers_[m].method().full_precision ? reference : run(scorers_[m], item.scored, prefill);
      std::vector<double> scores;
      for (const auto& suffix : item.suffixes) scores.push_back(own[last + static_cast<size_t>(suffix[0])] + later_tokens(scorers_[m], item, suffix));
      MethodMetrics& metrics = result.methods[m];
      metrics.predicted.push_back(static_cast<int>(std::max_element(scores.begin(), scores.end()) - scores.begin()));
      compare_position(&reference[last], &own[last], vocab_, metrics);
      add_storage(scorers_[m], item.scored.size(), metrics);
    }
  }

 private:
  std::vector<float> run(MethodScorer& scorer, const std::vector<int>& tokens, int prefill) {
    forward_tokens += static_cast<std::int64_t>(tokens.size());
    return scorer.log_probs(tokens, prefill);
  }

  /// Log-likelihood of a letter's tokens after its first (only when letters take several tokens).
  double later_tokens(MethodScorer& scorer, const ChoiceItem& item, const std::vector<int>& suffix) {
    if (suffix.size() < 2) return 0;
    std::vector<int> tokens = item.scored;
    tokens.insert(tokens.end(), suffix.begin(), suffix.end() - 1);
    const std::vector<float> log_probs = run(scorer, tokens, static_cast<int>(item.prompt.size()));
    double sum = 0;
    for (size_t j = 1; j < suffix.size(); ++j) {
      sum += log_probs[(item.scored.size() - 1 + j) * static_cast<size_t>(vocab_) + static_cast<size_t>(suffix[j])];
    }
    return sum;
  }

  void generate_answer(const ChoiceItem& item, size_t index, DatasetResult& result) {
    model::GenerationOptions generation;
    generation.max_new_tokens = options_.generate_tokens;
    generation.sampling = options_.sampling;
    generation.sampling.seed = options_.sampling.seed + index;  // the same draws for every method
    generation.stop_tokens = model::generation_stop_tokens(tokenizer_, options_.chat_template);
    for (size_t m = 0; m < scorers_.size(); ++m) {
      const std::vector<int> answer = scorers_[m].generate(item.prompt, generation);
      forward_tokens += static_cast<std::int64_t>(item.prompt.size() + answer.size());
      result.methods[m].predicted.push_back(eval::extract_answer(tokenizer_.decode(answer), item.choices));
      add_storage(scorers_[m], item.prompt.size() + answer.size(), result.methods[m]);
    }
  }

  static void add_storage(const MethodScorer& scorer, size_t tokens, MethodMetrics& metrics) {
    metrics.stored_bits += scorer.stored_bits(static_cast<std::int64_t>(tokens));
    metrics.stored_tokens += static_cast<std::int64_t>(tokens);
  }

  MethodScorer& reference_;
  std::vector<MethodScorer>& scorers_;
  const model::Tokenizer& tokenizer_;
  const EvaluationOptions& options_;
  int vocab_;
};

}  // namespace

EvaluationResult evaluate(const std::vector<std::string>& files, const model::Tokenizer& tokenizer,
                          MethodScorer& reference, std::vector<MethodScorer>& scorers,
                          const EvaluationOptions& options, const EvaluationProgress& progress) {
  const auto start = std::chrono::steady_clock::now();
  const model::ModelConfig& config = reference.decoder_config();
  std::vector<PreparedFile> prepared;
  std::int64_t total = 0;
  for (const std::string& path : files) {
    prepared.push_back(prepare_file(path, tokenizer, options, config.max_seq_len, scorers.size()));
    total += static_cast<std::int64_t>(prepared.back().windows.size() + prepared.back().questions.size());
  }
  FileRunner runner(reference, scorers, tokenizer, options, config.vocab_size);
  EvaluationResult result;
  std::int64_t done = 0;
  for (PreparedFile& file : prepared) {
    for (const auto& window : file.windows) {
      runner.score_window(window, file.result);
      if (progress) progress(++done, total, runner.forward_tokens);
    }
    for (size_t q = 0; q < file.questions.size(); ++q) {
      runner.score_question(file.questions[q], q, file.result);
      if (progress) progress(++done, total, runner.forward_tokens);
    }
    result.datasets.push_back(std::move(file.result));
  }
  result.forward_tokens = runner.forward_tokens;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace oscar::verify
