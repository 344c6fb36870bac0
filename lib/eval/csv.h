// Line-oriented reading shared by the evaluation loaders: RFC 4180 CSV, JSONL lines, whole small files.
//
// RFC 4180 CSV: comma-separated fields, double-quoted fields may hold commas, newlines and doubled quotes;
// CRLF or LF line ends; a UTF-8 BOM is skipped. Hand-written: Debian has no small, kept C++ CSV library
// (libcsv is C and unmaintained), and the format is one state machine.
// Like Python's csv module (the reference the tests compare with), a quote inside an unquoted field is kept
// as a literal character, and line breaks inside quoted fields are kept as they are written (CRLF stays CRLF).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace oscar::eval {

using CsvRow = std::vector<std::string>;

/// One record and the 1-based line it starts on (records with quoted line breaks span several lines), so
/// loaders can name the line of a bad value.
struct CsvRecord {
  CsvRow fields;
  size_t line = 0;
};

/// All records of `text`. Throws oscar::InputError("<source>: line N: <problem>") for an unterminated quote or
/// a character after a closing quote. Empty lines are skipped.
std::vector<CsvRow> parse_csv(const std::string& text, const std::string& source);
/// The same records with their line numbers.
std::vector<CsvRecord> parse_csv_records(const std::string& text, const std::string& source);

/// The largest file read_text_file accepts: evaluation sets and calibration text are megabytes, so anything
/// this big is a wrong path, not data.
constexpr size_t kMaxTextFileBytes = size_t{1} << 30;
/// The whole file as bytes. Throws oscar::InputError("<path>: ...") when it cannot be opened or read, or is
/// larger than kMaxTextFileBytes.
std::string read_text_file(const std::string& path);

/// `text` without leading and trailing ASCII whitespace.
std::string trim_whitespace(const std::string& text);
/// The file name's extension in lower case, with its dot (".csv"), or "".
std::string lowercase_extension(const std::string& path);

/// One line of a line-oriented file and its 1-based number.
struct TextLine {
  size_t number = 0;
  std::string text;  ///< without the line end (LF or CRLF)
};
/// The lines of `text` that hold more than whitespace (JSONL allows blank lines between records).
std::vector<TextLine> non_blank_lines(const std::string& text);
/// `line` parsed as one JSON object. Throws oscar::InputError("<source>: line N: invalid JSON (...)") or
/// ("...: line N: expected a JSON object") instead of nlohmann's exceptions.
nlohmann::json parse_jsonl_object(const TextLine& line, const std::string& source);
/// object[key] as a string. Throws oscar::InputError(where + "no \"key\"" or "\"key\" is not a string"), where
/// `where` is the "<path>: line N: " prefix.
std::string required_json_string(const nlohmann::json& object, const char* key, const std::string& where);

}  // namespace oscar::eval
