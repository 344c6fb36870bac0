// The real Qwen3 tokenizer.json (byte-level BPE, NFC, look-ahead pre-tokenizer regex, special tokens) against
// the ids Hugging Face's own implementation produces, plus round trips, special tokens and speed.
#include <chrono>

#include <nlohmann/json.hpp>

#include "model/chat_template.h"
#include "tokenizer_test_support.h"

namespace oscar::model::test {
namespace {

struct Expected {
  std::string text;
  std::vector<int> ids;
};

std::vector<Expected> expected_cases() {
  std::ifstream in(kQwen3Dir + "/expected_ids.jsonl");
  std::vector<Expected> cases;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto row = nlohmann::json::parse(line);
    cases.push_back({row.at("text").get<std::string>(), row.at("ids").get<std::vector<int>>()});
  }
  return cases;
}

TEST(Qwen3Tokenizer, ReproducesHuggingFaceIdsExactly) {
  const std::vector<Expected> cases = expected_cases();
  ASSERT_EQ(cases.size(), 20u);
  for (const Expected& c : cases) EXPECT_EQ(qwen3().encode(c.text), c.ids) << "text: " << c.text;
}

TEST(Qwen3Tokenizer, ExpectedIdsDecodeBackToTheirText) {
  // Every expected text is already in NFC, so decoding must give it back byte for byte.
  for (const Expected& c : expected_cases()) EXPECT_EQ(qwen3().decode(c.ids, /*keep_special=*/true), c.text);
}

TEST(Qwen3Tokenizer, Properties) {
  const Tokenizer& t = qwen3();
  EXPECT_EQ(t.kind(), "hf-bpe");
  EXPECT_EQ(t.vocab_size(), 151669);  // 151643 pieces + 26 added tokens
  EXPECT_EQ(t.bos(), -1);             // tokenizer_config.json: bos_token null
  EXPECT_EQ(t.eos(), 151645);         // eos_token "<|im_end|>"
  EXPECT_FALSE(t.adds_bos());
  EXPECT_EQ(t.piece(9707), "Hello");
  EXPECT_EQ(t.piece(4337), "\xC4\xA0World");  // "ĠWorld"
  EXPECT_EQ(t.find("\xC4\xA0World"), 4337);
  EXPECT_EQ(t.find("<|im_start|>"), 151644);
  EXPECT_EQ(t.find("no such piece"), -1);
  EXPECT_EQ(t.encode_with_bos("Hello World"), (std::vector<int>{9707, 4337}));
}

TEST(Qwen3Tokenizer, SpecialTokensWrittenInTextBecomeSingleIds) {
  const std::vector<int> ids = qwen3().encode("<|im_start|>user\nhi<|im_end|>");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids.front(), 151644);
  EXPECT_EQ(ids[1], 872);  // "user"
  EXPECT_EQ(ids[2], 198);  // "\n"
  EXPECT_EQ(ids.back(), 151645);
  EXPECT_EQ(qwen3().decode(ids), "user\nhi");
  EXPECT_EQ(qwen3().decode(ids, /*keep_special=*/true), "<|im_start|>user\nhi<|im_end|>");
  // A marker that is only almost right is ordinary text.
  const std::vector<int> broken = qwen3().encode("<|im_start|");
  EXPECT_EQ(std::count(broken.begin(), broken.end(), 151644), 0);
}

TEST(Qwen3Tokenizer, NonSpecialAddedTokensSurviveDecode) {
  // <tool_call> is an added token but not a special one: decode keeps it.
  const std::vector<int> ids = qwen3().encode("<tool_call>x</tool_call>");
  EXPECT_EQ(ids.front(), 151657);
  EXPECT_EQ(qwen3().decode(ids), "<tool_call>x</tool_call>");
}

TEST(Qwen3Tokenizer, RoundTripsVariedText) {
  const std::vector<std::string> texts = {
      "",
      "plain words",
      "  two leading spaces and   three inside   ",
      "line one\nline two\r\nline three\n\n\n",
      "\ttabs\t\tand\tspaces \t mixed",
      "Unicode: caf\xC3\xA9, \xC3\x85ngstr\xC3\xB6m, \xE2\x82\xAC" "100, \xE4\xB8\xAD\xE6\x96\x87, \xF0\x9F\x99\x82\xF0\x9F\x9A\x80",
      "numbers 1234567890 3.14159 -42",
      "code: if (x != y) { return a[i] << 2; }",
      "non\xC2\xA0" "breaking and\xE2\x80\x89thin spaces",
      "<|im_start|>system\nYou are helpful.<|im_end|>\n",
  };
  for (const std::string& s : texts) EXPECT_EQ(qwen3().decode(qwen3().encode(s), true), s) << "text: " << s;
}

TEST(Qwen3Tokenizer, IdsPastTheVocabularyDecodeToNothing) {
  // Qwen3's embedding has 151936 rows for 151669 tokens: a sampled padding id must not break decoding.
  EXPECT_EQ(qwen3().decode({9707, 151900, 4337}), "Hello World");
  EXPECT_THROW(qwen3().piece(151900), std::out_of_range);
}

TEST(Qwen3Tokenizer, NormalisesToNfc) {
  // "e" + combining acute composes to the single code point é before splitting.
  EXPECT_EQ(qwen3().encode("cafe\xCC\x81"), qwen3().encode("caf\xC3\xA9"));
}

TEST(Qwen3Tokenizer, InvalidUtf8IsReadAsReplacementCharacters) {
  EXPECT_EQ(qwen3().encode("a\xFF" "b"), qwen3().encode("a\xEF\xBF\xBD" "b"));
}

TEST(Qwen3Tokenizer, DetectsChatMl) { EXPECT_EQ(detect_chat_template(qwen3()), ChatTemplate::kChatML); }

TEST(Qwen3Tokenizer, Encodes100KBOfEnglishWellUnderASecond) {
  const std::string text = read_file(kValText).substr(0, 100 * 1024);
  qwen3();  // loading is not what is measured
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int> ids = qwen3().encode(text);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("Qwen3: %zu bytes -> %zu tokens in %.3f s\n", text.size(), ids.size(), seconds);
  EXPECT_LT(seconds, 0.5);
  EXPECT_GT(ids.size(), text.size() / 8);  // English runs about 4-5 bytes per token
  EXPECT_LT(ids.size(), text.size() / 3);
  EXPECT_EQ(qwen3().decode(ids), text);
}

}  // namespace
}  // namespace oscar::model::test

namespace oscar::model::test {
namespace {

TEST(Qwen3Tokenizer, LongRunsOfOneCharacterClassStayFast) {
  // Long whitespace runs exercise the look-ahead alternatives' backtracking; a long letter run is one huge
  // word for the merge loop (and too long for the word cache).
  const std::vector<std::string> texts = {std::string(200000, ' ') + "x", std::string(100000, '\n'),
                                          std::string(300000, 'a'), std::string(50000, '\t') + "\n \n"};
  qwen3();
  const auto start = std::chrono::steady_clock::now();
  for (const std::string& s : texts) EXPECT_EQ(qwen3().decode(qwen3().encode(s)), s);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("Qwen3 long runs: %.3f s\n", seconds);
  EXPECT_LT(seconds, 2.0);
}

}  // namespace
}  // namespace oscar::model::test
