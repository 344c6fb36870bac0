#include "eval/csv.h"

#include <cctype>
#include <filesystem>
#include <fstream>
#include <system_error>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace oscar::eval {
namespace {

/// The RFC 4180 state machine, fed one character at a time.
class CsvParser {
 public:
  explicit CsvParser(const std::string& source) : source_(source) {}

  void feed(char c, bool crlf) {
    switch (state_) {
      case State::kFieldStart: field_start(c, crlf); break;
      case State::kUnquoted: unquoted(c, crlf); break;
      case State::kQuoted: quoted(c); break;
      case State::kAfterQuote: after_quote(c, crlf); break;
    }
    // A CR that starts a CRLF is not a line of its own; the LF that follows counts it.
    if (c == '\n' || (c == '\r' && !crlf)) ++line_;
  }

  std::vector<CsvRecord> finish() {
    if (state_ == State::kQuoted)
      throw InputError(source_ + ": line " + std::to_string(quote_line_) + ": unterminated quoted field");
    end_record();
    return std::move(records_);
  }

 private:
  enum class State { kFieldStart, kUnquoted, kQuoted, kAfterQuote };

  static bool is_line_end(char c) { return c == '\n' || c == '\r'; }

  void field_start(char c, bool crlf) {
    if (is_line_end(c)) {
      if (!crlf) end_record();  // an empty line ends nothing: end_record skips records never started
      return;
    }
    start_record();
    if (c == '"') {
      state_ = State::kQuoted;
      quote_line_ = line_;
    } else if (c == ',') {
      end_field();
    } else {
      field_ += c;
      state_ = State::kUnquoted;
    }
  }

  void unquoted(char c, bool crlf) {
    if (c == ',') {
      end_field();
    } else if (is_line_end(c)) {
      if (!crlf) end_record();
    } else {
      field_ += c;  // a quote inside an unquoted field is literal, as in Python's csv module
    }
  }

  void quoted(char c) {
    if (c == '"') {
      state_ = State::kAfterQuote;
    } else {
      field_ += c;  // commas and line breaks are data here
    }
  }

  void after_quote(char c, bool crlf) {
    if (c == '"') {  // a doubled quote is one literal quote
      field_ += '"';
      state_ = State::kQuoted;
    } else if (c == ',') {
      end_field();
    } else if (is_line_end(c)) {
      if (!crlf) end_record();
    } else {
      throw InputError(source_ + ": line " + std::to_string(line_) +
                       ": unexpected character after a closing quote (quotes inside a quoted field must be doubled)");
    }
  }

  void start_record() {
    if (record_started_) return;
    record_started_ = true;
    record_.line = line_;
  }

  void end_field() {
    record_.fields.push_back(std::move(field_));
    field_.clear();
    state_ = State::kFieldStart;
  }

  void end_record() {
    if (record_started_) {
      end_field();
      records_.push_back(std::move(record_));
    }
    record_ = CsvRecord{};
    record_started_ = false;
    state_ = State::kFieldStart;
  }

  const std::string& source_;
  State state_ = State::kFieldStart;
  size_t line_ = 1;
  size_t quote_line_ = 1;  ///< where the open quoted field began, for the unterminated-quote message
  bool record_started_ = false;
  std::string field_;
  CsvRecord record_;
  std::vector<CsvRecord> records_;
};

bool starts_with_utf8_bom(const std::string& text) { return text.compare(0, 3, "\xEF\xBB\xBF") == 0; }

}  // namespace

std::vector<CsvRecord> parse_csv_records(const std::string& text, const std::string& source) {
  CsvParser parser(source);
  for (size_t pos = starts_with_utf8_bom(text) ? 3 : 0; pos < text.size(); ++pos) {
    const bool crlf = text[pos] == '\r' && pos + 1 < text.size() && text[pos + 1] == '\n';
    parser.feed(text[pos], crlf);
  }
  return parser.finish();
}

std::vector<CsvRow> parse_csv(const std::string& text, const std::string& source) {
  std::vector<CsvRow> rows;
  for (CsvRecord& record : parse_csv_records(text, source)) rows.push_back(std::move(record.fields));
  return rows;
}

std::string read_text_file(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::is_regular_file(path, error)) {
    const bool exists = std::filesystem::exists(path, error);
    throw InputError(path + (exists ? ": not a regular file" : ": no such file"));
  }
  const auto size = std::filesystem::file_size(path, error);
  if (error) throw InputError(path + ": cannot read its size (" + error.message() + ")");
  if (size > kMaxTextFileBytes)
    throw InputError(path + ": " + std::to_string(size) + " bytes, more than the " +
                     std::to_string(kMaxTextFileBytes) + " a text or evaluation file may have");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open");
  std::string text(static_cast<size_t>(size), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (static_cast<size_t>(in.gcount()) != text.size()) throw InputError(path + ": cannot read (truncated?)");
  return text;
}

std::string trim_whitespace(const std::string& text) {
  const char* const kWhitespace = " \t\n\r\f\v";
  const size_t begin = text.find_first_not_of(kWhitespace);
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(kWhitespace) - begin + 1);
}

std::string lowercase_extension(const std::string& path) {
  std::string extension = std::filesystem::path(path).extension().string();
  for (char& c : extension) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return extension;
}

std::vector<TextLine> non_blank_lines(const std::string& text) {
  std::vector<TextLine> lines;
  size_t number = 1;
  for (size_t begin = 0; begin < text.size(); ++number) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(begin, end - begin);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!trim_whitespace(line).empty()) lines.push_back({number, std::move(line)});
    begin = end + 1;
  }
  return lines;
}

nlohmann::json parse_jsonl_object(const TextLine& line, const std::string& source) {
  const std::string where = source + ": line " + std::to_string(line.number) + ": ";
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(line.text);
  } catch (const nlohmann::json::parse_error& error) {
    // nlohmann's message is one line: "[json.exception.parse_error.101] parse error at ...".
    throw InputError(where + "invalid JSON (" + error.what() + ")");
  }
  if (!value.is_object()) throw InputError(where + "expected a JSON object, found " + value.type_name());
  return value;
}

std::string required_json_string(const nlohmann::json& object, const char* key, const std::string& where) {
  const auto it = object.find(key);
  if (it == object.end()) throw InputError(where + "no \"" + key + "\"");
  if (!it->is_string()) throw InputError(where + "\"" + key + "\" is not a string");
  return it->get<std::string>();
}

}  // namespace oscar::eval
