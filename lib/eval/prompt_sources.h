// Calibration and evaluation inputs as prompts: plain text files, JSONL ("text" or "messages"), and
// multiple-choice sets rendered with the simple-evals template. Plain C++.
#pragma once

#include <string>
#include <vector>

#include "model/chat_template.h"

namespace oscar::eval {

enum class DataKind { kText, kJsonl, kMultipleChoice };

struct Prompt {
  std::string source;                        ///< "<file>:<index>"
  bool chat = false;                         ///< true: render `messages` with the chat template
  std::vector<model::ChatMessage> messages;  ///< when chat
  std::string text;                          ///< when !chat: raw text (cut into --seq-len windows later)
};

/// .txt (and anything else) -> text; .jsonl with "text"/"messages" -> JSONL; .jsonl with "options" (ARC) or "choices" (generic) and
/// .csv (GPQA, MMLU) -> multiple choice. A .jsonl file is judged by its first non-blank line; one that is not
/// a JSON object with any of those keys throws oscar::InputError("<path>: line N: ...").
DataKind detect_data_kind(const std::string& path);

/// Text file: one raw prompt per document, documents separated by "<|endoftext|>" lines or markers (the
/// whole file when there is none), each trimmed of surrounding whitespace (the line breaks around the
/// markers); empty documents dropped. JSONL: one prompt per non-blank line, {"text": str} raw or
/// {"messages": [{"role": str, "content": str}...]} chat (not both; other keys ignored). Multiple choice: one
/// chat prompt per question, a single user message holding render_simple_evals(question). Sources are
/// "<path>:<0-based index>". Throws oscar::InputError("<path>: line N: <problem>"), and ("<path>: no prompts")
/// for a file without any, since an empty calibration or evaluation run is always a mistake.
std::vector<Prompt> load_prompts(const std::string& path);

}  // namespace oscar::eval
