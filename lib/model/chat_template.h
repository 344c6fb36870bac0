// Built-in chat templates: ChatML (Qwen) and Llama-3, and a raw mode, rendered to text whose special tokens
// the tokenizer recognises. Plain C++.
#pragma once

#include <string>
#include <vector>

namespace oscar::model {

class Tokenizer;

enum class ChatTemplate { kNone, kChatML, kLlama3 };

struct ChatMessage {
  std::string role;  ///< "system", "user" or "assistant"
  std::string content;
};

/// "none", "chatml", "llama3"; parse accepts those and throws oscar::UsageError otherwise ("auto" is
/// resolved by detect_chat_template, not here).
std::string chat_template_name(ChatTemplate chat_template);
ChatTemplate parse_chat_template(const std::string& name);
/// parse_chat_template, except that "auto" means detect_chat_template(tokenizer).
ChatTemplate resolve_chat_template(const std::string& name, const Tokenizer& tokenizer);
/// The template a tokenizer's special tokens imply: <|im_start|> -> ChatML, <|start_header_id|> -> Llama-3,
/// otherwise none.
ChatTemplate detect_chat_template(const Tokenizer& tokenizer);

/// The conversation as the template writes it, ending with the assistant header when
/// `add_generation_prompt`. kNone joins the contents with blank lines ("\n\n") and adds nothing.
/// Llama-3 starts with "<|begin_of_text|>"; ChatML has no BOS.
std::string render_chat(ChatTemplate chat_template, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt);

/// A conversation as the model's input ids, ready for the assistant to answer: with a template, its
/// rendering with the generation prompt (the template carries any BOS); with kNone, the joined contents with
/// BOS in front when the tokenizer uses one.
std::vector<int> encode_chat(const Tokenizer& tokenizer, ChatTemplate chat_template, const std::vector<ChatMessage>& messages);

/// Tokens that end a generated answer: EOS, and the template's end-of-turn marker (<|im_end|>, <|eot_id|>)
/// when the tokenizer has it.
std::vector<int> generation_stop_tokens(const Tokenizer& tokenizer, ChatTemplate chat_template);

}  // namespace oscar::model
