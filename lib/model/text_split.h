// Text handling shared by the tokenizers: UTF-8 characters, Unicode normalisation (utf8proc), regex splitting
// (PCRE2, for the look-ahead and \p{..} classes of the pre-tokenizer patterns), and literal matching of
// special tokens. Plain C++; internal to lib/model.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace oscar::model::text {

/// Bytes in the UTF-8 character whose first byte is `lead`: 1 for ASCII and for bytes that cannot start a
/// character (they then stand alone).
std::size_t utf8_char_length(unsigned char lead);

/// Calls `visit(const char* begin, size_t length)` for each UTF-8 character of `text`; a truncated
/// character at the end is visited with the bytes that are there.
template <class Visit>
void for_each_utf8_char(const std::string& text, Visit visit) {
  for (std::size_t i = 0; i < text.size();) {
    std::size_t n = utf8_char_length(static_cast<unsigned char>(text[i]));
    if (i + n > text.size()) n = text.size() - i;
    visit(text.data() + i, n);
    i += n;
  }
}

/// `text` with every byte that is not part of a valid UTF-8 character replaced by U+FFFD, as a decoder with
/// errors="replace" would read it. Regexes and normalisers need valid UTF-8.
std::string sanitize_utf8(const std::string& text);

enum class NormalForm { kNFC, kNFD, kNFKC, kNFKD };
/// Unicode normalisation of valid UTF-8 (ASCII passes through untouched).
std::string normalize_unicode(const std::string& text, NormalForm form);
/// Simple per-code-point lowercasing.
std::string lowercase_unicode(const std::string& text);

/// Every occurrence of `from` replaced by `to`.
std::string replace_all(const std::string& text, const std::string& from, const std::string& to);

/// A compiled PCRE2 pattern (UTF and Unicode properties on, so \s, \p{L} and (?i) follow Unicode as the
/// Hugging Face tokenizers' Oniguruma regexes do). Immutable and safe to share between threads.
class Regex {
 public:
  /// `literal`: the pattern is a plain string. Throws std::invalid_argument with PCRE2's message.
  explicit Regex(const std::string& pattern, bool literal = false);
  /// Byte ranges [begin, end) of the successive non-overlapping matches in valid UTF-8 `text`; empty
  /// matches are dropped.
  std::vector<std::pair<std::size_t, std::size_t>> find_all(const std::string& text) const;

 private:
  struct Code;
  std::shared_ptr<const Code> code_;
};

/// "Isolated" splitting: the matches and the text between them, in order, without empty pieces.
std::vector<std::string> split_isolated(const Regex& regex, const std::string& text);

/// A run of plain text, or one matched literal (token >= 0).
struct Segment {
  std::string text;
  int token = -1;
};

/// Finds special tokens written literally in text: the leftmost occurrence, the longest literal among those
/// starting there (the Hugging Face added-vocabulary rule).
class LiteralMatcher {
 public:
  void add(const std::string& literal, int token);
  bool empty() const { return count_ == 0; }
  /// `text` cut into plain runs and matched literals, in order; plain runs are never empty.
  std::vector<Segment> split(const std::string& text) const;

 private:
  /// Literals by their first byte, longest first.
  std::array<std::vector<std::pair<std::string, int>>, 256> by_first_byte_;
  std::size_t count_ = 0;
};

}  // namespace oscar::model::text
