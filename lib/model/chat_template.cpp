#include "model/chat_template.h"

#include "core/error.h"
#include "model/tokenizer.h"

namespace oscar::model {

std::string chat_template_name(ChatTemplate chat_template) {
  switch (chat_template) {
    case ChatTemplate::kNone: return "none";
    case ChatTemplate::kChatML: return "chatml";
    case ChatTemplate::kLlama3: return "llama3";
  }
  return "none";
}

ChatTemplate parse_chat_template(const std::string& name) {
  if (name == "none") return ChatTemplate::kNone;
  if (name == "chatml") return ChatTemplate::kChatML;
  if (name == "llama3") return ChatTemplate::kLlama3;
  throw UsageError("unknown chat template '" + name + "' (expected none, chatml, llama3 or auto)");
}

ChatTemplate resolve_chat_template(const std::string& name, const Tokenizer& tokenizer) {
  return name == "auto" ? detect_chat_template(tokenizer) : parse_chat_template(name);
}

ChatTemplate detect_chat_template(const Tokenizer& tokenizer) {
  if (tokenizer.find("<|im_start|>") >= 0) return ChatTemplate::kChatML;
  if (tokenizer.find("<|start_header_id|>") >= 0) return ChatTemplate::kLlama3;
  return ChatTemplate::kNone;
}

namespace {

std::string render_chatml(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out;
  for (const ChatMessage& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string llama3_header(const std::string& role) { return "<|start_header_id|>" + role + "<|end_header_id|>\n\n"; }

std::string render_llama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out = "<|begin_of_text|>";
  for (const ChatMessage& m : messages) out += llama3_header(m.role) + m.content + "<|eot_id|>";
  if (add_generation_prompt) out += llama3_header("assistant");
  return out;
}

std::string render_plain(const std::vector<ChatMessage>& messages) {
  std::string out;
  for (std::size_t i = 0; i < messages.size(); ++i) out += (i ? "\n\n" : "") + messages[i].content;
  return out;
}

}  // namespace

std::string render_chat(ChatTemplate chat_template, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt) {
  switch (chat_template) {
    case ChatTemplate::kChatML: return render_chatml(messages, add_generation_prompt);
    case ChatTemplate::kLlama3: return render_llama3(messages, add_generation_prompt);
    case ChatTemplate::kNone: break;
  }
  return render_plain(messages);
}

std::vector<int> encode_chat(const Tokenizer& tokenizer, ChatTemplate chat_template, const std::vector<ChatMessage>& messages) {
  if (chat_template == ChatTemplate::kNone) return tokenizer.encode_with_bos(render_plain(messages));
  return tokenizer.encode(render_chat(chat_template, messages, /*add_generation_prompt=*/true));
}

std::vector<int> generation_stop_tokens(const Tokenizer& tokenizer, ChatTemplate chat_template) {
  std::vector<int> stops;
  if (tokenizer.eos() >= 0) stops.push_back(tokenizer.eos());
  const char* turn_end = chat_template == ChatTemplate::kChatML ? "<|im_end|>"
                         : chat_template == ChatTemplate::kLlama3 ? "<|eot_id|>"
                                                                  : nullptr;
  if (turn_end != nullptr && tokenizer.find(turn_end) >= 0) stops.push_back(tokenizer.find(turn_end));
  return stops;
}

}  // namespace oscar::model
