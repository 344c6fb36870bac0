#include "eval/prompt_sources.h"

#include <nlohmann/json.hpp>
#include <utility>

#include "core/error.h"
#include "eval/csv.h"
#include "eval/multiple_choice.h"

namespace oscar::eval {
namespace {

constexpr const char* kDocumentSeparator = "<|endoftext|>";

std::string line_prefix(const std::string& path, size_t line) {
  return path + ": line " + std::to_string(line) + ": ";
}

std::string prompt_source(const std::string& path, size_t index) { return path + ":" + std::to_string(index); }

/// A JSONL file's kind, from its first non-blank line.
DataKind jsonl_kind(const std::string& text, const std::string& path) {
  const std::vector<TextLine> lines = non_blank_lines(text);
  if (lines.empty()) throw InputError(path + ": no prompts");
  const nlohmann::json first = parse_jsonl_object(lines.front(), path);
  // "options" (ARC) or "choices" (generic): the multiple-choice loader tells them apart.
  if (first.contains("options") || first.contains("choices")) return DataKind::kMultipleChoice;
  if (first.contains("text") || first.contains("messages")) return DataKind::kJsonl;
  throw InputError(line_prefix(path, lines.front().number) +
                   "expected \"text\", \"messages\" or (multiple choice) \"options\" or \"choices\"");
}

DataKind data_kind(const std::string& path, const std::string* text) {
  const std::string extension = lowercase_extension(path);
  if (extension == ".csv") return DataKind::kMultipleChoice;
  if (extension != ".jsonl") return DataKind::kText;
  return text ? jsonl_kind(*text, path) : jsonl_kind(read_text_file(path), path);
}

std::vector<Prompt> text_prompts(const std::string& text, const std::string& path) {
  const std::string separator = kDocumentSeparator;
  std::vector<Prompt> prompts;
  for (size_t begin = 0; begin <= text.size();) {
    size_t end = text.find(separator, begin);
    if (end == std::string::npos) end = text.size();
    std::string document = trim_whitespace(text.substr(begin, end - begin));
    if (!document.empty()) {
      Prompt prompt;
      prompt.source = prompt_source(path, prompts.size());
      prompt.text = std::move(document);
      prompts.push_back(std::move(prompt));
    }
    begin = end + separator.size();
  }
  return prompts;
}

std::vector<model::ChatMessage> chat_messages(const nlohmann::json& messages, const std::string& where) {
  if (!messages.is_array() || messages.empty())
    throw InputError(where + "\"messages\" is not a non-empty array");
  std::vector<model::ChatMessage> result;
  for (const nlohmann::json& message : messages) {
    if (!message.is_object()) throw InputError(where + "a message is not an object");
    result.push_back(
        {required_json_string(message, "role", where), required_json_string(message, "content", where)});
    if (result.back().role.empty()) throw InputError(where + "a message has an empty \"role\"");
  }
  return result;
}

Prompt jsonl_prompt(const TextLine& line, const std::string& path) {
  const std::string where = line_prefix(path, line.number);
  const nlohmann::json object = parse_jsonl_object(line, path);
  const bool has_text = object.contains("text"), has_messages = object.contains("messages");
  if (has_text == has_messages)
    throw InputError(where + (has_text ? "both \"text\" and \"messages\"" : "neither \"text\" nor \"messages\""));
  Prompt prompt;
  prompt.chat = has_messages;
  if (has_messages) {
    prompt.messages = chat_messages(object.at("messages"), where);
  } else {
    prompt.text = required_json_string(object, "text", where);
  }
  return prompt;
}

std::vector<Prompt> jsonl_prompts(const std::string& text, const std::string& path) {
  std::vector<Prompt> prompts;
  for (const TextLine& line : non_blank_lines(text)) {
    prompts.push_back(jsonl_prompt(line, path));
    prompts.back().source = prompt_source(path, prompts.size() - 1);
  }
  return prompts;
}

std::vector<Prompt> multiple_choice_prompts(const std::string& path) {
  std::vector<Prompt> prompts;
  for (const MultipleChoiceQuestion& question : load_multiple_choice(path)) {
    Prompt prompt;
    prompt.source = prompt_source(path, prompts.size());
    prompt.chat = true;
    prompt.messages.push_back({"user", render_simple_evals(question)});
    prompts.push_back(std::move(prompt));
  }
  return prompts;
}

}  // namespace

DataKind detect_data_kind(const std::string& path) { return data_kind(path, nullptr); }

std::vector<Prompt> load_prompts(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<Prompt> prompts;
  switch (data_kind(path, &text)) {
    case DataKind::kText: prompts = text_prompts(text, path); break;
    case DataKind::kJsonl: prompts = jsonl_prompts(text, path); break;
    case DataKind::kMultipleChoice: prompts = multiple_choice_prompts(path); break;
  }
  if (prompts.empty()) throw InputError(path + ": no prompts");
  return prompts;
}

}  // namespace oscar::eval
