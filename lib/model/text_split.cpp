#include "model/text_split.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

namespace oscar::model::text {

std::size_t utf8_char_length(unsigned char lead) {
  if (lead < 0xC0) return 1;  // ASCII, or a continuation byte standing alone
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 1;
}

namespace {

bool is_ascii(const std::string& text) {
  return std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

/// Length of the valid UTF-8 character at `offset`, or 0 when the bytes there are not one (utf8proc rejects
/// overlong forms and surrogates).
std::size_t valid_char_length(const std::string& text, std::size_t offset) {
  utf8proc_int32_t code_point = 0;
  const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data()) + offset;
  const utf8proc_ssize_t n = utf8proc_iterate(bytes, static_cast<utf8proc_ssize_t>(text.size() - offset), &code_point);
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

}  // namespace

std::string sanitize_utf8(const std::string& text) {
  if (is_ascii(text)) return text;
  static const std::string kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = valid_char_length(text, i);
    if (n == 0) {
      out += kReplacement;
      ++i;
    } else {
      out.append(text, i, n);
      i += n;
    }
  }
  return out;
}

std::string normalize_unicode(const std::string& text, NormalForm form) {
  if (is_ascii(text)) return text;  // every normal form leaves ASCII unchanged
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormalForm::kNFC: options |= UTF8PROC_COMPOSE; break;
    case NormalForm::kNFD: options |= UTF8PROC_DECOMPOSE; break;
    case NormalForm::kNFKC: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormalForm::kNFKD: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                          static_cast<utf8proc_ssize_t>(text.size()), &result,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0) {  // only for invalid UTF-8, which callers sanitise away; leave such text as it is
    std::free(result);
    return text;
  }
  std::string out(reinterpret_cast<const char*>(result), static_cast<std::size_t>(n));
  std::free(result);
  return out;
}

std::string lowercase_unicode(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size();) {
    utf8proc_int32_t code_point = 0;
    const auto* bytes = reinterpret_cast<const utf8proc_uint8_t*>(text.data()) + i;
    const utf8proc_ssize_t n = utf8proc_iterate(bytes, static_cast<utf8proc_ssize_t>(text.size() - i), &code_point);
    if (n <= 0) {  // keep an invalid byte as it is
      out += text[i++];
      continue;
    }
    utf8proc_uint8_t encoded[4];
    const utf8proc_ssize_t m = utf8proc_encode_char(utf8proc_tolower(code_point), encoded);
    out.append(reinterpret_cast<const char*>(encoded), static_cast<std::size_t>(m));
    i += static_cast<std::size_t>(n);
  }
  return out;
}

std::string replace_all(const std::string& text, const std::string& from, const std::string& to) {
  if (from.empty()) return text;
  std::string out;
  out.reserve(text.size());
  std::size_t start = 0;
  for (std::size_t hit = text.find(from); hit != std::string::npos; hit = text.find(from, start)) {
    out.append(text, start, hit - start);
    out += to;
    start = hit + from.size();
  }
  out.append(text, start, std::string::npos);
  return out;
}

struct Regex::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

Regex::Regex(const std::string& pattern, bool literal) {
  // PCRE2_LITERAL admits UTF but not UCP (a literal has no classes anyway).
  const uint32_t options = literal ? (PCRE2_UTF | PCRE2_LITERAL) : (PCRE2_UTF | PCRE2_UCP);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  auto code = std::make_shared<Code>();
  code->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &error_code,
                             &error_offset, nullptr);
  if (code->code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof message);
    throw std::invalid_argument("regex " + pattern + ": " + reinterpret_cast<const char*>(message) + " at offset " +
                                std::to_string(error_offset));
  }
  pcre2_jit_compile(code->code, PCRE2_JIT_COMPLETE);  // best effort: without JIT matching is just slower
  code_ = std::move(code);
}

std::vector<std::pair<std::size_t, std::size_t>> Regex::find_all(const std::string& text) const {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(code_->code, nullptr), &pcre2_match_data_free);
  std::vector<std::pair<std::size_t, std::size_t>> matches;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  for (std::size_t offset = 0; offset <= text.size();) {
    int rc = pcre2_match(code_->code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, match.get(), nullptr);
    // The JIT's fixed stack can run out on pathological input; the interpreter has a larger heap budget.
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
      rc = pcre2_match(code_->code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, match.get(),
                       nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw std::runtime_error("regex match failed with PCRE2 error " + std::to_string(rc));
    const PCRE2_SIZE* range = pcre2_get_ovector_pointer(match.get());
    if (range[1] > range[0]) {
      matches.emplace_back(range[0], range[1]);
      offset = range[1];
    } else {  // an empty match: step over one character so the search moves on
      if (range[0] >= text.size()) break;
      offset = range[0] + utf8_char_length(static_cast<unsigned char>(text[range[0]]));
    }
  }
  return matches;
}

std::vector<std::string> split_isolated(const Regex& regex, const std::string& text) {
  std::vector<std::string> pieces;
  std::size_t previous_end = 0;
  for (const auto& [begin, end] : regex.find_all(text)) {
    if (begin > previous_end) pieces.push_back(text.substr(previous_end, begin - previous_end));
    pieces.push_back(text.substr(begin, end - begin));
    previous_end = end;
  }
  if (previous_end < text.size()) pieces.push_back(text.substr(previous_end));
  return pieces;
}

void LiteralMatcher::add(const std::string& literal, int token) {
  if (literal.empty()) return;
  auto& bucket = by_first_byte_[static_cast<unsigned char>(literal[0])];
  for (const auto& entry : bucket)
    if (entry.first == literal) return;  // the first id registered for a literal wins
  // Keep the bucket longest first (after equally long ones), so the first hit in split() is the longest.
  const auto position = std::upper_bound(bucket.begin(), bucket.end(), literal.size(),
                                         [](std::size_t size, const auto& entry) { return size > entry.first.size(); });
  bucket.insert(position, {literal, token});
  ++count_;
}

std::vector<Segment> LiteralMatcher::split(const std::string& text) const {
  std::vector<Segment> segments;
  std::size_t plain_start = 0;
  for (std::size_t i = 0; i < text.size();) {
    const auto& bucket = by_first_byte_[static_cast<unsigned char>(text[i])];
    const auto hit = std::find_if(bucket.begin(), bucket.end(),
                                  [&](const auto& entry) { return text.compare(i, entry.first.size(), entry.first) == 0; });
    if (hit == bucket.end()) {
      ++i;
      continue;
    }
    if (i > plain_start) segments.push_back({text.substr(plain_start, i - plain_start), -1});
    segments.push_back({hit->first, hit->second});
    i += hit->first.size();
    plain_start = i;
  }
  if (plain_start < text.size()) segments.push_back({text.substr(plain_start), -1});
  return segments;
}

}  // namespace oscar::model::text
