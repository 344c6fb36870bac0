#include "eval/multiple_choice.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <utility>

#include "core/error.h"
#include "eval/csv.h"

namespace oscar::eval {
namespace {

constexpr int kMaxChoices = 26;  // one letter each, A-Z

std::string line_prefix(const std::string& path, size_t line) {
  return path + ": line " + std::to_string(line) + ": ";
}

std::string file_stem(const std::string& path) { return std::filesystem::path(path).stem().string(); }

bool is_blank(const std::string& text) { return trim_whitespace(text).empty(); }

// --- CSV columns by name --------------------------------------------------------------------------------------

/// The header's column index for `name`, or npos.
size_t find_column(const CsvRecord& header, const std::string& name) {
  const auto it = std::find_if(header.fields.begin(), header.fields.end(),
                               [&](const std::string& field) { return trim_whitespace(field) == name; });
  return it == header.fields.end() ? std::string::npos : static_cast<size_t>(it - header.fields.begin());
}

/// The header's column index for each name; throws naming the first missing one.
std::vector<size_t> find_columns(const CsvRecord& header, const std::vector<std::string>& names,
                                 const std::string& path) {
  std::vector<size_t> columns;
  for (const std::string& name : names) {
    columns.push_back(find_column(header, name));
    if (columns.back() == std::string::npos)
      throw InputError(line_prefix(path, header.line) + "no \"" + name + "\" column in the header");
  }
  return columns;
}

void check_width(const CsvRecord& record, size_t width, const std::string& path) {
  if (record.fields.size() != width)
    throw InputError(line_prefix(path, record.line) + "expected " + std::to_string(width) + " fields, found " +
                     std::to_string(record.fields.size()));
}

// --- GPQA ------------------------------------------------------------------------------------------------------

uint64_t fnv1a64(const std::string& bytes) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char byte : bytes) {
    hash ^= byte;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

uint64_t splitmix64_next(uint64_t& state) {
  state += 0x9e3779b97f4a7c15ULL;
  uint64_t z = state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// The display order of [correct, incorrect 1..3] for a question (Fisher-Yates, documented in the header).
std::array<int, 4> gpqa_order(const std::string& question) {
  std::array<int, 4> order = {0, 1, 2, 3};
  uint64_t state = fnv1a64(question);
  for (int i = 3; i > 0; --i) {
    const auto j = static_cast<size_t>(splitmix64_next(state) % static_cast<uint64_t>(i + 1));
    std::swap(order[static_cast<size_t>(i)], order[j]);
  }
  return order;
}

MultipleChoiceQuestion gpqa_question(const CsvRecord& record, const CsvRecord& header,
                                     const std::vector<size_t>& columns, const std::string& path) {
  MultipleChoiceQuestion question;
  question.question = trim_whitespace(record.fields[columns[0]]);
  if (question.question.empty()) throw InputError(line_prefix(path, record.line) + "empty \"Question\"");
  const std::array<int, 4> order = gpqa_order(question.question);
  for (size_t k = 0; k < order.size(); ++k) {
    const size_t column = columns[1 + static_cast<size_t>(order[k])];
    question.choices.push_back(trim_whitespace(record.fields[column]));
    if (question.choices.back().empty())
      throw InputError(line_prefix(path, record.line) + "empty \"" + trim_whitespace(header.fields[column]) + "\"");
    if (order[k] == 0) question.answer = static_cast<int>(k);
  }
  return question;
}

std::vector<MultipleChoiceQuestion> gpqa_from_text(const std::string& text, const std::string& path) {
  const std::vector<CsvRecord> records = parse_csv_records(text, path);
  if (records.empty()) throw InputError(path + ": no questions");
  const CsvRecord& header = records.front();
  const std::vector<size_t> columns = find_columns(
      header, {"Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"},
      path);
  const size_t id_column = find_column(header, "Record ID");
  std::vector<MultipleChoiceQuestion> questions;
  for (size_t r = 1; r < records.size(); ++r) {
    check_width(records[r], header.fields.size(), path);
    questions.push_back(gpqa_question(records[r], header, columns, path));
    const std::string id = id_column == std::string::npos ? "" : trim_whitespace(records[r].fields[id_column]);
    questions.back().id = id.empty() ? file_stem(path) + ":" + std::to_string(questions.size() - 1) : id;
  }
  if (questions.empty()) throw InputError(path + ": no questions");
  return questions;
}

// --- MMLU ------------------------------------------------------------------------------------------------------

/// "0".."3" or "A".."D" -> 0..3, otherwise -1.
int parse_mmlu_answer(const std::string& field) {
  const std::string answer = trim_whitespace(field);
  if (answer.size() != 1) return -1;
  if (answer[0] >= '0' && answer[0] <= '3') return answer[0] - '0';
  if (answer[0] >= 'A' && answer[0] <= 'D') return answer[0] - 'A';
  return -1;
}

/// A first row naming both "question" and "answer" columns is a header (a question row never looks so).
bool is_mmlu_header(const CsvRecord& record) {
  return find_column(record, "question") != std::string::npos && find_column(record, "answer") != std::string::npos;
}

MultipleChoiceQuestion mmlu_question(const CsvRecord& record, const std::vector<size_t>& columns,
                                     const std::string& path) {
  MultipleChoiceQuestion question;
  question.question = record.fields[columns[0]];
  if (is_blank(question.question)) throw InputError(line_prefix(path, record.line) + "empty question");
  for (size_t k = 1; k <= 4; ++k) question.choices.push_back(record.fields[columns[k]]);
  question.answer = parse_mmlu_answer(record.fields[columns[5]]);
  if (question.answer < 0)
    throw InputError(line_prefix(path, record.line) + "answer \"" + record.fields[columns[5]] +
                     "\" is not 0-3 or A-D");
  return question;
}

std::vector<MultipleChoiceQuestion> mmlu_from_text(const std::string& text, const std::string& path) {
  const std::vector<CsvRecord> records = parse_csv_records(text, path);
  const bool has_header = !records.empty() && is_mmlu_header(records.front());
  // Without a header the six columns are positional, as in the original MMLU release.
  const std::vector<size_t> columns =
      has_header
          ? find_columns(records.front(), {"question", "choice0", "choice1", "choice2", "choice3", "answer"}, path)
          : std::vector<size_t>{0, 1, 2, 3, 4, 5};
  const size_t width = has_header ? records.front().fields.size() : columns.size();
  std::vector<MultipleChoiceQuestion> questions;
  for (size_t r = has_header ? 1 : 0; r < records.size(); ++r) {
    check_width(records[r], width, path);
    questions.push_back(mmlu_question(records[r], columns, path));
    questions.back().id = file_stem(path) + ":" + std::to_string(questions.size() - 1);
  }
  if (questions.empty()) throw InputError(path + ": no questions");
  return questions;
}

// --- JSONL (ARC, generic) --------------------------------------------------------------------------------------

/// object["question"], which must be a string with more than whitespace.
std::string json_question(const nlohmann::json& object, const std::string& where) {
  std::string question = required_json_string(object, "question", where);
  if (is_blank(question)) throw InputError(where + "empty \"question\"");
  return question;
}

/// Throws unless `count` choices can be shown, one letter each. `noun`: what the file calls them.
void check_choice_count(size_t count, const char* noun, const std::string& where) {
  if (count < 2 || count > static_cast<size_t>(kMaxChoices))
    throw InputError(where + std::to_string(count) + " " + noun + ", expected 2-" + std::to_string(kMaxChoices));
}

std::string default_id(const std::string& path, size_t index) { return file_stem(path) + ":" + std::to_string(index); }

std::vector<MultipleChoiceQuestion> questions_per_line(
    const std::string& text, const std::string& path,
    const std::function<MultipleChoiceQuestion(const TextLine&, size_t, const std::string&)>& parse_line) {
  std::vector<MultipleChoiceQuestion> questions;
  for (const TextLine& line : non_blank_lines(text)) questions.push_back(parse_line(line, questions.size(), path));
  if (questions.empty()) throw InputError(path + ": no questions");
  return questions;
}

// --- ARC -------------------------------------------------------------------------------------------------------

/// Fills the choices and returns the labels, in order.
std::vector<std::string> arc_options(const nlohmann::json& object, MultipleChoiceQuestion& question,
                                     const std::string& where) {
  const auto options = object.find("options");
  if (options == object.end() || !options->is_array()) throw InputError(where + "no \"options\" array");
  check_choice_count(options->size(), "options", where);
  std::vector<std::string> labels;
  for (const nlohmann::json& option : *options) {
    if (!option.is_object()) throw InputError(where + "an option is not an object");
    labels.push_back(required_json_string(option, "label", where));
    question.choices.push_back(required_json_string(option, "text", where));
  }
  return labels;
}

MultipleChoiceQuestion arc_question(const TextLine& line, size_t index, const std::string& path) {
  const std::string where = line_prefix(path, line.number);
  const nlohmann::json object = parse_jsonl_object(line, path);
  MultipleChoiceQuestion question;
  question.question = json_question(object, where);
  const std::vector<std::string> labels = arc_options(object, question, where);
  const std::string answer = required_json_string(object, "answer", where);
  const auto label = std::find(labels.begin(), labels.end(), answer);
  if (label == labels.end()) throw InputError(where + "answer \"" + answer + "\" is none of the option labels");
  question.answer = static_cast<int>(label - labels.begin());
  const auto id = object.find("id");
  question.id = id != object.end() && id->is_string() ? id->get<std::string>() : default_id(path, index);
  return question;
}

// --- generic JSONL ---------------------------------------------------------------------------------------------

std::vector<std::string> generic_choices(const nlohmann::json& object, const std::string& where) {
  const auto choices = object.find("choices");
  if (choices == object.end() || !choices->is_array()) throw InputError(where + "no \"choices\" array");
  check_choice_count(choices->size(), "choices", where);
  std::vector<std::string> texts;
  for (const nlohmann::json& choice : *choices) {
    if (!choice.is_string())
      throw InputError(where + "choice " + std::to_string(texts.size()) + " is not a string (" + choice.type_name() +
                       ")");
    texts.push_back(choice.get<std::string>());
  }
  return texts;
}

/// The index of the choice whose text is `answer`, -1 when none is; throws when several are.
int choice_with_text(const std::vector<std::string>& choices, const std::string& answer, const std::string& where) {
  const auto first = std::find(choices.begin(), choices.end(), answer);
  if (first == choices.end()) return -1;
  if (std::find(first + 1, choices.end(), answer) != choices.end())
    throw InputError(where + "answer \"" + answer + "\" is the text of more than one choice");
  return static_cast<int>(first - choices.begin());
}

/// The "answer" value as a choice index (the rules are in the header).
int generic_answer(const nlohmann::json& object, const std::vector<std::string>& choices, const std::string& where) {
  const auto answer = object.find("answer");
  if (answer == object.end()) throw InputError(where + "no \"answer\"");
  const auto count = static_cast<int64_t>(choices.size());
  const std::string range = "0-" + std::to_string(count - 1);
  if (answer->is_number_integer()) {
    // An unsigned value beyond int64 is out of range too (get<int64_t> would wrap it).
    const bool huge = answer->is_number_unsigned() && answer->get<uint64_t>() > uint64_t{INT64_MAX};
    const int64_t index = huge ? -1 : answer->get<int64_t>();
    if (index < 0 || index >= count)
      throw InputError(where + "answer " + answer->dump() + " is out of range " + range);
    return static_cast<int>(index);
  }
  if (!answer->is_string())
    throw InputError(where + "\"answer\" is not an integer or a string (" + answer->type_name() + ")");
  const std::string text = answer->get<std::string>();
  const int by_text = choice_with_text(choices, text, where);
  if (text.size() == 1 && text[0] >= 'A' && text[0] <= 'Z') {
    const int by_letter = text[0] - 'A';
    if (by_letter < count) {
      if (by_text >= 0 && by_text != by_letter)
        throw InputError(where + "answer \"" + text + "\" is ambiguous: letter " + text + " is choice " +
                         std::to_string(by_letter) + " but choice " + std::to_string(by_text) +
                         " has that text (give the index instead)");
      return by_letter;
    }
    if (by_text < 0)
      throw InputError(where + "answer \"" + text + "\" is out of range A-" +
                       std::string(1, answer_letter(static_cast<int>(count - 1))) + " and matches no choice");
  }
  if (by_text < 0) throw InputError(where + "answer \"" + text + "\" matches no choice");
  return by_text;
}

/// The "id" value as text; "" when absent or null.
std::string generic_id(const nlohmann::json& object, const std::string& where) {
  const auto id = object.find("id");
  if (id == object.end() || id->is_null()) return "";
  if (id->is_string()) return id->get<std::string>();
  if (id->is_number()) return id->dump();
  throw InputError(where + "\"id\" is not a string or a number (" + id->type_name() + ")");
}

MultipleChoiceQuestion generic_question(const TextLine& line, size_t index, const std::string& path) {
  const std::string where = line_prefix(path, line.number);
  const nlohmann::json object = parse_jsonl_object(line, path);
  MultipleChoiceQuestion question;
  question.question = json_question(object, where);
  question.choices = generic_choices(object, where);
  question.answer = generic_answer(object, question.choices, where);
  const std::string id = generic_id(object, where);
  question.id = id.empty() ? default_id(path, index) : id;
  return question;
}

// --- format detection ------------------------------------------------------------------------------------------

MultipleChoiceFormat detect_format(const std::string& text, const std::string& path) {
  const std::string extension = lowercase_extension(path);
  if (extension == ".jsonl") {
    const std::vector<TextLine> lines = non_blank_lines(text);
    if (lines.empty()) throw InputError(path + ": no questions");
    const nlohmann::json first = parse_jsonl_object(lines.front(), path);
    if (first.contains("options")) return MultipleChoiceFormat::kArcJsonl;
    if (first.contains("choices")) return MultipleChoiceFormat::kGenericJsonl;
    throw InputError(line_prefix(path, lines.front().number) +
                     "not a multiple-choice question (no \"options\" for ARC or \"choices\" for generic JSONL)");
  }
  if (extension == ".csv") {
    const std::vector<CsvRecord> records = parse_csv_records(text, path);
    const bool gpqa = !records.empty() && find_column(records.front(), "Correct Answer") != std::string::npos;
    return gpqa ? MultipleChoiceFormat::kGpqaCsv : MultipleChoiceFormat::kMmluCsv;
  }
  throw InputError(path + ": not a multiple-choice file (expected .csv for GPQA/MMLU or .jsonl for ARC/generic)");
}

std::vector<MultipleChoiceQuestion> load_text(MultipleChoiceFormat format, const std::string& text,
                                              const std::string& path) {
  switch (format) {
    case MultipleChoiceFormat::kGpqaCsv: return gpqa_from_text(text, path);
    case MultipleChoiceFormat::kMmluCsv: return mmlu_from_text(text, path);
    case MultipleChoiceFormat::kArcJsonl: return questions_per_line(text, path, arc_question);
    case MultipleChoiceFormat::kGenericJsonl: return questions_per_line(text, path, generic_question);
  }
  throw InputError(path + ": unknown multiple-choice format");
}

}  // namespace

std::vector<MultipleChoiceQuestion> load_gpqa_csv(const std::string& path) {
  return load_text(MultipleChoiceFormat::kGpqaCsv, read_text_file(path), path);
}

std::vector<MultipleChoiceQuestion> load_mmlu_csv(const std::string& path) {
  return load_text(MultipleChoiceFormat::kMmluCsv, read_text_file(path), path);
}

std::vector<MultipleChoiceQuestion> load_arc_jsonl(const std::string& path) {
  return load_text(MultipleChoiceFormat::kArcJsonl, read_text_file(path), path);
}

std::vector<MultipleChoiceQuestion> load_generic_jsonl(const std::string& path) {
  return load_text(MultipleChoiceFormat::kGenericJsonl, read_text_file(path), path);
}

MultipleChoiceFormat detect_multiple_choice_format(const std::string& path) {
  return detect_format(read_text_file(path), path);
}

std::vector<MultipleChoiceQuestion> load_multiple_choice(const std::string& path) {
  const std::string text = read_text_file(path);
  return load_text(detect_format(text, path), text, path);
}

char answer_letter(int index) { return index >= 0 && index < kMaxChoices ? static_cast<char>('A' + index) : '?'; }

std::string render_simple_evals(const MultipleChoiceQuestion& question) {
  std::string letters;
  for (size_t k = 0; k < question.choices.size(); ++k) letters += answer_letter(static_cast<int>(k));
  std::string prompt =
      "Answer the following multiple choice question. The last line of your response should be of the following "
      "format: 'Answer: $LETTER' (without quotes) where LETTER is one of " +
      letters + ". Think step by step before answering.\n\n" + question.question + "\n";
  for (size_t k = 0; k < question.choices.size(); ++k)
    prompt += std::string("\n") + letters[k] + ") " + question.choices[k];
  return prompt;
}

int extract_answer(const std::string& response, int num_choices) {
  const int choices = std::clamp(num_choices, 0, kMaxChoices);
  const auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  // A hand scan of (?i)Answer\s*:\s*([A-?]): "Answer", spaces, ':' and the letter are disjoint classes, so
  // the regex never backtracks and trying each start position in turn is exactly re.search.
  for (size_t start = 0; start + 6 <= response.size(); ++start) {
    size_t pos = start;
    bool word = true;
    for (const char expected : std::string("answer"))
      word = word && std::tolower(static_cast<unsigned char>(response[pos++])) == expected;
    if (!word) continue;
    while (pos < response.size() && is_space(response[pos])) ++pos;
    if (pos >= response.size() || response[pos++] != ':') continue;
    while (pos < response.size() && is_space(response[pos])) ++pos;
    if (pos >= response.size()) continue;
    const char letter = response[pos];
    const int upper = letter - 'A', lower = letter - 'a';
    if (upper >= 0 && upper < choices) return upper;
    if (lower >= 0 && lower < choices) return -1;  // captured, but never equal to the upper-case correct letter
  }
  return -1;
}

}  // namespace oscar::eval
