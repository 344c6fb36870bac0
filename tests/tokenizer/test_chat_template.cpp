// Built-in chat templates: exact rendered strings, names, and what the renderings tokenize to.
#include "core/error.h"
#include "model/chat_template.h"
#include "tokenizer_test_support.h"

namespace oscar::model::test {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "You are terse."},
    {"user", "What is 2+2?"},
    {"assistant", "4"},
    {"user", "And 3+3?"},
};

TEST(ChatTemplate, ChatMlRendering) {
  EXPECT_EQ(render_chat(ChatTemplate::kChatML, kConversation, true),
            "<|im_start|>system\nYou are terse.<|im_end|>\n"
            "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
            "<|im_start|>assistant\n4<|im_end|>\n"
            "<|im_start|>user\nAnd 3+3?<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(ChatTemplate::kChatML, {{"user", "hi"}}, false), "<|im_start|>user\nhi<|im_end|>\n");
}

TEST(ChatTemplate, Llama3Rendering) {
  EXPECT_EQ(render_chat(ChatTemplate::kLlama3, {{"system", "Be brief."}, {"user", "Hi"}}, true),
            "<|begin_of_text|>"
            "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(render_chat(ChatTemplate::kLlama3, {{"user", "Hi"}}, false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(ChatTemplate, NoneJoinsContentsWithBlankLines) {
  EXPECT_EQ(render_chat(ChatTemplate::kNone, kConversation, true), "You are terse.\n\nWhat is 2+2?\n\n4\n\nAnd 3+3?");
  EXPECT_EQ(render_chat(ChatTemplate::kNone, {{"user", "only"}}, true), "only");
  EXPECT_EQ(render_chat(ChatTemplate::kNone, {}, true), "");
}

TEST(ChatTemplate, NamesRoundTripAndUnknownNamesAreUsageErrors) {
  for (ChatTemplate t : {ChatTemplate::kNone, ChatTemplate::kChatML, ChatTemplate::kLlama3})
    EXPECT_EQ(parse_chat_template(chat_template_name(t)), t);
  EXPECT_EQ(chat_template_name(ChatTemplate::kChatML), "chatml");
  EXPECT_EQ(chat_template_name(ChatTemplate::kLlama3), "llama3");
  EXPECT_EQ(chat_template_name(ChatTemplate::kNone), "none");
  EXPECT_THROW(parse_chat_template("auto"), UsageError);
  EXPECT_THROW(parse_chat_template("ChatML"), UsageError);
}

TEST(ChatTemplate, ChatMlRenderingTokenizesToTheQwenMarkers) {
  // The same conversation as expected_ids.jsonl's chat case, whose ids Hugging Face produced.
  const std::string prompt = render_chat(ChatTemplate::kChatML, {{"user", "What is 2+2?"}}, true);
  EXPECT_EQ(qwen3().encode(prompt),
            (std::vector<int>{151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645, 198, 151644, 77091, 198}));
}

TEST(ChatTemplate, EncodeChatUsesTheTemplateOrBosAndPlainText) {
  // ChatML: the same ids Hugging Face produced for this conversation (expected_ids.jsonl's chat case).
  EXPECT_EQ(encode_chat(qwen3(), ChatTemplate::kChatML, {{"user", "What is 2+2?"}}),
            (std::vector<int>{151644, 872, 198, 3838, 374, 220, 17, 10, 17, 30, 151645, 198, 151644, 77091, 198}));
  // None: the plain text, with BOS only for tokenizers that use one (Qwen3 does not).
  EXPECT_EQ(encode_chat(qwen3(), ChatTemplate::kNone, {{"user", "Hello World"}}), (std::vector<int>{9707, 4337}));
}

TEST(ChatTemplate, StopTokensAreEosAndTheTurnEndMarker) {
  const Tokenizer& tokenizer = qwen3();  // eos is <|im_end|> (151645) itself
  EXPECT_EQ(generation_stop_tokens(tokenizer, ChatTemplate::kNone), (std::vector<int>{151645}));
  EXPECT_EQ(generation_stop_tokens(tokenizer, ChatTemplate::kChatML), (std::vector<int>{151645, 151645}));
  EXPECT_EQ(generation_stop_tokens(tokenizer, ChatTemplate::kLlama3), (std::vector<int>{151645}));  // no <|eot_id|>
  EXPECT_EQ(resolve_chat_template("auto", tokenizer), ChatTemplate::kChatML);
  EXPECT_EQ(resolve_chat_template("llama3", tokenizer), ChatTemplate::kLlama3);
}

}  // namespace
}  // namespace oscar::model::test
