#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace oscar::eval {

double PerplexityResult::perplexity() const { return std::exp(mean_nll()); }

namespace {

constexpr const char* kDocumentSeparator = "<|endoftext|>";

}  // namespace

std::vector<std::vector<int>> tokenize_documents(const model::Tokenizer& tokenizer, const std::string& text) {
  std::vector<std::vector<int>> documents;
  std::size_t begin = 0;
  while (begin <= text.size()) {
    std::size_t end = text.find(kDocumentSeparator, begin);
    if (end == std::string::npos) end = text.size();
    const std::string document = text.substr(begin, end - begin);
    if (document.find_first_not_of(" \t\r\n") != std::string::npos) {
      const std::size_t first = document.find_first_not_of("\r\n");  // the line break after a marker
      documents.push_back(tokenizer.encode_with_bos(document.substr(first)));
    }
    begin = end + std::string(kDocumentSeparator).size();
  }
  return documents;
}

namespace {

/// Strided scoring of one token sequence into `result`.
void score_sequence(model::Decoder& decoder, const std::vector<int>& ids, std::size_t window, std::size_t step,
                    PerplexityResult& result) {
  std::size_t scored_until = 1;  // ids[0] has no context: never scored
  for (std::size_t first = 0; scored_until < ids.size(); first += step) {
    const std::size_t end = std::min(first + window, ids.size());
    const std::vector<int> chunk(ids.begin() + std::ptrdiff_t(first), ids.begin() + std::ptrdiff_t(end));
    const std::vector<double> log_probs = decoder.next_token_log_probs(chunk);  // [i] predicts ids[first + i + 1]
    for (std::size_t target = scored_until; target < end; ++target) result.total_nll -= log_probs[target - first - 1];
    result.tokens_scored += std::int64_t(end - scored_until);
    scored_until = end;
  }
}

}  // namespace

PerplexityResult text_perplexity(model::Decoder& decoder, const model::Tokenizer& tokenizer, const std::string& text,
                                 int seq_len, int stride, std::int64_t max_tokens,
                                 const std::function<void(std::int64_t, std::int64_t)>& on_window) {
  const std::size_t window = std::size_t(std::min(seq_len, decoder.config().max_seq_len));
  if (window < 2) throw UsageError("--seq-len must be at least 2");
  const std::size_t step = stride > 0 ? std::min(std::size_t(stride), window) : std::max<std::size_t>(1, window / 2);
  std::vector<std::vector<int>> documents = tokenize_documents(tokenizer, text);
  std::int64_t total = 0;
  for (auto& ids : documents) {
    if (max_tokens > 0 && total + std::int64_t(ids.size()) > max_tokens) ids.resize(std::size_t(std::max<std::int64_t>(max_tokens - total, 0)));
    total += std::int64_t(ids.size());
  }
  PerplexityResult result;
  std::int64_t done = 0;
  for (const auto& ids : documents) {
    if (ids.size() >= 2) score_sequence(decoder, ids, window, step, result);
    done += std::int64_t(ids.size());
    if (on_window) on_window(done, total);
  }
  if (result.tokens_scored == 0) throw InputError("the text has fewer than two tokens");
  return result;
}

}  // namespace oscar::eval
