// Perplexity of a model on a text, tokenized once with BOS in front when the tokenizer uses one. Windows of
// seq_len tokens slide by `stride`; each window scores only the tokens no earlier window scored, so every
// token after the first window is predicted from at least seq_len − stride tokens of context (Hugging Face's
// strided perplexity; stride = seq_len gives llama2.c-style disjoint windows whose first tokens see almost
// nothing). Each window runs from an empty cache. A text holding "<|endoftext|>" markers is scored document by
// document (each tokenized on its own, BOS first), as TinyStories models were trained on one story per
// BOS-led sequence.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/decoder.h"
#include "model/tokenizer.h"

namespace oscar::eval {

struct PerplexityResult {
  std::int64_t tokens_scored = 0;
  double total_nll = 0;  ///< natural log
  double mean_nll() const { return tokens_scored > 0 ? total_nll / double(tokens_scored) : 0.0; }
  double perplexity() const;
};

/// Token ids of every non-empty document of the text (split at "<|endoftext|>", each tokenized on its own,
/// BOS first when the tokenizer uses one); the whole text is one document when it has no marker.
std::vector<std::vector<int>> tokenize_documents(const model::Tokenizer& tokenizer, const std::string& text);

/// Scores at most max_tokens tokens of the text (0: all); stride 0 means seq_len / 2. `on_window(done, total)` reports progress in tokens.
/// Throws oscar::InputError when the text has fewer than two tokens.
PerplexityResult text_perplexity(model::Decoder& decoder, const model::Tokenizer& tokenizer, const std::string& text,
                                 int seq_len, int stride = 0, std::int64_t max_tokens = 0,
                                 const std::function<void(std::int64_t, std::int64_t)>& on_window = {});

}  // namespace oscar::eval
