#include "model/bpe_tokenizer.h"

#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace oscar::model {
namespace {

using Normalizer = BpePipeline::Normalizer;
using PreTokenizer = BpePipeline::PreTokenizer;
using Decoder = BpePipeline::Decoder;

std::string replace_matches(const text::Regex& regex, const std::string& input, const std::string& replacement) {
  std::string out;
  std::size_t previous_end = 0;
  for (const auto& [begin, end] : regex.find_all(input)) {
    out.append(input, previous_end, begin - previous_end);
    out += replacement;
    previous_end = end;
  }
  out.append(input, previous_end, std::string::npos);
  return out;
}

std::string apply_normalizer(const Normalizer& step, const std::string& input) {
  switch (step.kind) {
    case Normalizer::Kind::kNFC: return text::normalize_unicode(input, text::NormalForm::kNFC);
    case Normalizer::Kind::kNFD: return text::normalize_unicode(input, text::NormalForm::kNFD);
    case Normalizer::Kind::kNFKC: return text::normalize_unicode(input, text::NormalForm::kNFKC);
    case Normalizer::Kind::kNFKD: return text::normalize_unicode(input, text::NormalForm::kNFKD);
    case Normalizer::Kind::kLowercase: return text::lowercase_unicode(input);
    case Normalizer::Kind::kPrepend: return input.empty() ? input : step.text + input;
    case Normalizer::Kind::kReplace:
      return step.regex ? replace_matches(*step.regex, input, step.replacement)
                        : text::replace_all(input, step.text, step.replacement);
  }
  return input;
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

/// Cuts before every occurrence of `mark` (Hugging Face's "MergedWithNext": the mark begins the next word).
std::vector<std::string> split_before(const std::string& input, const std::string& mark) {
  std::vector<std::string> pieces;
  std::size_t start = 0;
  for (std::size_t hit = input.find(mark, 1); hit != std::string::npos; hit = input.find(mark, hit + mark.size())) {
    if (hit > start) pieces.push_back(input.substr(start, hit - start));
    start = hit;
  }
  if (start < input.size()) pieces.push_back(input.substr(start));
  return pieces;
}

/// One pre-tokenizer on one piece; `first`: the piece starts the original text (Metaspace's "first" scheme).
void apply_pre_tokenizer(const PreTokenizer& step, const std::string& piece, bool first, std::vector<std::string>& out) {
  switch (step.kind) {
    case PreTokenizer::Kind::kSplit: {
      for (std::string& p : text::split_isolated(*step.regex, piece)) out.push_back(std::move(p));
      return;
    }
    case PreTokenizer::Kind::kByteLevel: {
      static const text::Regex gpt2(kGpt2SplitPattern);
      const std::string prefixed = step.add_prefix_space && !starts_with(piece, " ") ? " " + piece : piece;
      if (!step.use_regex) {
        out.push_back(bpe::bytes_to_byte_level(prefixed));
        return;
      }
      for (const std::string& p : text::split_isolated(gpt2, prefixed)) out.push_back(bpe::bytes_to_byte_level(p));
      return;
    }
    case PreTokenizer::Kind::kMetaspace: {
      std::string replaced = text::replace_all(piece, " ", step.replacement);
      const bool prepend = step.prepend == PreTokenizer::Prepend::kAlways ||
                           (step.prepend == PreTokenizer::Prepend::kFirst && first);
      if (prepend && !starts_with(replaced, step.replacement)) replaced = step.replacement + replaced;
      if (!step.split) {
        out.push_back(std::move(replaced));
        return;
      }
      for (std::string& p : split_before(replaced, step.replacement)) out.push_back(std::move(p));
      return;
    }
  }
}

/// Strips up to `count` copies of `character` from the front (or back) of `token`.
std::string strip_repeated(std::string token, const std::string& character, int start, int stop) {
  if (character.empty()) return token;
  for (int i = 0; i < start && starts_with(token, character); ++i) token.erase(0, character.size());
  for (int i = 0; i < stop && token.size() >= character.size() &&
                  token.compare(token.size() - character.size(), character.size(), character) == 0;
       ++i)
    token.erase(token.size() - character.size());
  return token;
}

void apply_decoder(const Decoder& step, std::vector<std::string>& tokens) {
  switch (step.kind) {
    case Decoder::Kind::kByteLevel: {
      std::string bytes;
      // A token with a character outside the alphabet (an added token such as "<|im_start|>" with a space)
      // is kept as written, as Hugging Face does.
      for (std::string& t : tokens)
        if (bpe::byte_level_to_bytes(t, bytes)) t = bytes;
      return;
    }
    case Decoder::Kind::kReplace:
      for (std::string& t : tokens) t = text::replace_all(t, step.text, step.replacement);
      return;
    case Decoder::Kind::kByteFallback:
      // Raw bytes rather than Hugging Face's U+FFFD for an incomplete character, so that decoding a sequence
      // piece by piece and concatenating gives the same bytes as decoding it whole.
      for (std::string& t : tokens) {
        const int byte = bpe::parse_byte_piece(t);
        if (byte >= 0) t = std::string(1, static_cast<char>(byte));
      }
      return;
    case Decoder::Kind::kFuse: {
      std::string fused;
      for (const std::string& t : tokens) fused += t;
      tokens.assign(1, fused);
      return;
    }
    case Decoder::Kind::kStrip:
      for (std::string& t : tokens) t = strip_repeated(std::move(t), step.text, step.strip_start, step.strip_stop);
      return;
    case Decoder::Kind::kMetaspace:
      for (std::size_t i = 0; i < tokens.size(); ++i) {
        tokens[i] = text::replace_all(tokens[i], step.text, " ");
        if (i == 0 && step.strip_first_space && starts_with(tokens[i], " ")) tokens[i].erase(0, 1);
      }
      return;
  }
}

class PipelineTokenizer final : public Tokenizer {
 public:
  explicit PipelineTokenizer(BpePipeline pipeline) : p_(std::move(pipeline)) {
    auto& pieces = p_.model.pieces;
    for (const auto& added : p_.added_tokens) {
      if (added.id < 0) continue;
      if (static_cast<std::size_t>(added.id) >= pieces.size()) pieces.resize(static_cast<std::size_t>(added.id) + 1);
      if (pieces[static_cast<std::size_t>(added.id)].empty()) pieces[static_cast<std::size_t>(added.id)] = added.content;
      (added.normalized ? normalized_literals_ : raw_literals_).add(added.content, added.id);
    }
    special_.assign(pieces.size(), false);
    for (const auto& added : p_.added_tokens)
      if (added.id >= 0 && added.special) special_[static_cast<std::size_t>(added.id)] = true;
    for (int id : p_.special_ids)
      if (id >= 0 && static_cast<std::size_t>(id) < pieces.size()) special_[static_cast<std::size_t>(id)] = true;
    for (std::size_t id = 0; id < pieces.size(); ++id)
      if (!pieces[id].empty()) lookup_.emplace(pieces[id], static_cast<int>(id));
  }

  std::vector<int> encode(const std::string& input) const override {
    std::vector<int> ids;
    const std::vector<text::Segment> raw = split_literals(raw_literals_, text::sanitize_utf8(input));
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if (raw[i].token >= 0) {
        ids.push_back(raw[i].token);
        continue;
      }
      const auto normalized = split_literals(normalized_literals_, normalize(raw[i].text));
      for (std::size_t j = 0; j < normalized.size(); ++j) {
        if (normalized[j].token >= 0) {
          ids.push_back(normalized[j].token);
          continue;
        }
        for (const std::string& word : pre_tokenize(normalized[j].text, i == 0 && j == 0)) encode_word(word, ids);
      }
    }
    return ids;
  }

  std::string decode(const std::vector<int>& ids, bool keep_special) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int id : ids) {
      // Ids past the vocabulary (a model's padded embedding rows) have no text: skipped, as Hugging Face does.
      if (id < 0 || id >= vocab_size()) continue;
      if (!keep_special && special_[static_cast<std::size_t>(id)]) continue;
      tokens.push_back(p_.model.pieces[static_cast<std::size_t>(id)]);
    }
    for (const Decoder& step : p_.decoders) apply_decoder(step, tokens);
    std::string out;
    for (const std::string& t : tokens) out += t;
    return out;
  }

  std::string piece(int id) const override {
    check_id(id);
    return p_.model.pieces[static_cast<std::size_t>(id)];
  }
  int find(const std::string& piece) const override {
    const auto it = lookup_.find(piece);
    return it == lookup_.end() ? -1 : it->second;
  }
  int vocab_size() const override { return static_cast<int>(p_.model.pieces.size()); }
  int bos() const override { return p_.bos; }
  int eos() const override { return p_.eos; }
  bool adds_bos() const override { return p_.adds_bos; }
  std::string kind() const override { return p_.kind; }

 private:
  /// Words longer than this are encoded afresh each time: caching them would mostly hold whole documents
  /// (SentencePiece-style vocabularies without a pre-tokenizer see the whole text as one word).
  static constexpr std::size_t kCachedWordBytes = 128;
  static constexpr std::size_t kCacheEntries = 1 << 16;

  void check_id(int id) const {
    if (id < 0 || id >= vocab_size())
      throw std::out_of_range("token id " + std::to_string(id) + " outside the vocabulary of " +
                              std::to_string(vocab_size()));
  }

  static std::vector<text::Segment> split_literals(const text::LiteralMatcher& literals, std::string input) {
    if (literals.empty()) {
      std::vector<text::Segment> whole;
      if (!input.empty()) whole.push_back({std::move(input), -1});
      return whole;
    }
    return literals.split(input);
  }

  std::string normalize(std::string input) const {
    for (const Normalizer& step : p_.normalizers) input = apply_normalizer(step, input);
    return input;
  }

  std::vector<std::string> pre_tokenize(const std::string& input, bool starts_text) const {
    std::vector<std::string> pieces{input};
    for (const PreTokenizer& step : p_.pre_tokenizers) {
      std::vector<std::string> next;
      for (std::size_t i = 0; i < pieces.size(); ++i) apply_pre_tokenizer(step, pieces[i], starts_text && i == 0, next);
      pieces.swap(next);
    }
    return pieces;
  }

  void encode_word(const std::string& word, std::vector<int>& ids) const {
    if (word.size() > kCachedWordBytes) {
      p_.model.encode_word(word, ids);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(cache_mutex_);
      const auto it = cache_.find(word);
      if (it != cache_.end()) {
        ids.insert(ids.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int> word_ids;
    p_.model.encode_word(word, word_ids);
    ids.insert(ids.end(), word_ids.begin(), word_ids.end());
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheEntries) cache_.clear();  // crude bound; a text's common words come back quickly
    cache_.emplace(word, std::move(word_ids));
  }

  BpePipeline p_;
  text::LiteralMatcher raw_literals_, normalized_literals_;
  std::vector<bool> special_;
  std::unordered_map<std::string, int> lookup_;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int>> cache_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(BpePipeline pipeline) {
  return std::make_unique<PipelineTokenizer>(std::move(pipeline));
}

}  // namespace oscar::model
