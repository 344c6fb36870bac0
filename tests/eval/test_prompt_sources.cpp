// Prompt sources: the TinyStories sample split into its documents (compared with Python's split), JSONL text
// and chat lines, multiple-choice files as one-user-message chat prompts, and malformed inputs.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../io/io_test_support.h"
#include "core/error.h"
#include "eval/multiple_choice.h"
#include "eval/prompt_sources.h"

namespace oscar::eval {
namespace {

const std::string kData = OSCAR_SHARED_DATA;
const std::string kStories = kData + "/text/tinystories_sample.txt";
const std::string kArc = kData + "/eval/arc_challenge_test.jsonl";

using test::write_text_file;


TEST(TextPrompts, TinyStoriesSampleHasFiveDocuments) {
  EXPECT_EQ(detect_data_kind(kStories), DataKind::kText);
  const std::vector<Prompt> prompts = load_prompts(kStories);
  ASSERT_EQ(prompts.size(), 5U) << "SOURCES.md: 5 stories";
  const test::TempDir scratch;
  const std::string out = scratch / "stories.json";
  ASSERT_EQ(test::run_python(scratch,
                             "import json, sys\n"
                             "text = open(sys.argv[1], encoding='utf-8').read()\n"
                             "docs = [d.strip() for d in text.split('<|endoftext|>')]\n"
                             "json.dump([d for d in docs if d], open(sys.argv[2], 'w'))\n",
                             {kStories, out}),
            0);
  const auto expected = nlohmann::json::parse(std::ifstream(out)).get<std::vector<std::string>>();
  ASSERT_EQ(expected.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_FALSE(prompts[i].chat);
    EXPECT_TRUE(prompts[i].messages.empty());
    EXPECT_EQ(prompts[i].text, expected[i]) << i;
    EXPECT_EQ(prompts[i].source, kStories + ":" + std::to_string(i));
  }
  EXPECT_EQ(prompts[0].text.rfind("Once upon a time there was a little boy named Ben.", 0), 0U);
}

TEST(TextPrompts, WholeFileWithoutMarkersAndInlineMarkers) {
  const test::TempDir scratch;
  write_text_file(scratch / "plain.md", "\n  Just one document,\nover two lines.\n\n");
  const auto plain = load_prompts(scratch / "plain.md");
  ASSERT_EQ(plain.size(), 1U);
  EXPECT_EQ(plain[0].text, "Just one document,\nover two lines.");
  write_text_file(scratch / "inline.txt", "first<|endoftext|>second<|endoftext|>\n<|endoftext|>  \nthird");
  const auto inline_docs = load_prompts(scratch / "inline.txt");
  ASSERT_EQ(inline_docs.size(), 3U);
  EXPECT_EQ(inline_docs[1].text, "second");
  EXPECT_EQ(inline_docs[2].text, "third");
  EXPECT_EQ(inline_docs[2].source, scratch / "inline.txt:2");
}

TEST(JsonlPrompts, TextAndMessagesLines) {
  const test::TempDir scratch;
  const std::string path = scratch / "mixed.jsonl";
  write_text_file(path,
             "{\"text\": \"raw \\\"quoted\\\"\\nline\", \"meta\": 1}\n"
             "\n"
             "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
             "{\"role\": \"user\", \"content\": \"caf\\u00e9?\"}]}\r\n");
  EXPECT_EQ(detect_data_kind(path), DataKind::kJsonl);
  const std::vector<Prompt> prompts = load_prompts(path);
  ASSERT_EQ(prompts.size(), 2U);
  EXPECT_FALSE(prompts[0].chat);
  EXPECT_EQ(prompts[0].text, "raw \"quoted\"\nline");
  EXPECT_EQ(prompts[0].source, path + ":0");
  ASSERT_TRUE(prompts[1].chat);
  ASSERT_EQ(prompts[1].messages.size(), 2U);
  EXPECT_EQ(prompts[1].messages[0].role, "system");
  EXPECT_EQ(prompts[1].messages[0].content, "Be brief.");
  EXPECT_EQ(prompts[1].messages[1].role, "user");
  EXPECT_EQ(prompts[1].messages[1].content, "caf\xC3\xA9?");
  EXPECT_EQ(prompts[1].source, path + ":1");
}

TEST(JsonlPrompts, MalformedLinesNameFileAndLine) {
  const test::TempDir scratch;
  const std::string good = R"({"text": "fine"})";
  const auto check = [&](const std::string& name, const std::string& third_line, const std::string& also) {
    const std::string path = scratch / name;
    write_text_file(path, good + "\n" + good + "\n" + third_line + "\n");
    test::expect_input_error_with_prefix([&] { load_prompts(path); }, path + ": line 3: ", also);
  };
  check("invalid.jsonl", R"({"text": "unterminated)", "invalid JSON");
  check("array.jsonl", R"(["text"])", "JSON object");
  check("both.jsonl", R"({"text": "a", "messages": [{"role": "user", "content": "b"}]})", "both");
  check("neither.jsonl", R"({"prompt": "a"})", "neither");
  check("text_number.jsonl", R"({"text": 5})", "\"text\"");
  check("messages_object.jsonl", R"({"messages": {"role": "user"}})", "\"messages\"");
  check("messages_empty.jsonl", R"({"messages": []})", "\"messages\"");
  check("no_role.jsonl", R"({"messages": [{"content": "b"}]})", "\"role\"");
  check("content_null.jsonl", R"({"messages": [{"role": "user", "content": null}]})", "\"content\"");
  const std::string unknown = scratch / "unknown.jsonl";
  write_text_file(unknown, "\n{\"prompt\": \"a\"}\n");
  test::expect_input_error_with_prefix([&] { detect_data_kind(unknown); }, unknown + ": line 2: ");
}

TEST(MultipleChoicePrompts, ArcQuestionsBecomeOneUserMessage) {
  EXPECT_EQ(detect_data_kind(kArc), DataKind::kMultipleChoice);
  const std::vector<Prompt> prompts = load_prompts(kArc);
  const std::vector<MultipleChoiceQuestion> questions = load_arc_jsonl(kArc);
  ASSERT_EQ(prompts.size(), 1172U);
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(prompts[i].chat);
    ASSERT_EQ(prompts[i].messages.size(), 1U);
    ASSERT_EQ(prompts[i].messages[0].role, "user");
    ASSERT_EQ(prompts[i].messages[0].content, render_simple_evals(questions[i]));
  }
  EXPECT_EQ(prompts[0].source, kArc + ":0");
  const std::string& first = prompts[0].messages[0].content;
  EXPECT_NE(first.find("\n\nAn astronomer observes"), std::string::npos);
  const std::string last_choices =
      "\n\nA) Planetary density will decrease.\nB) Planetary years will become longer.\n"
      "C) Planetary days will become shorter.\nD) Planetary gravity will become stronger.";
  ASSERT_GE(first.size(), last_choices.size());
  EXPECT_EQ(first.substr(first.size() - last_choices.size()), last_choices);
}

TEST(MultipleChoicePrompts, MmluCsvFile) {
  const std::string path = kData + "/eval/mmlu/test/abstract_algebra_test.csv";
  EXPECT_EQ(detect_data_kind(path), DataKind::kMultipleChoice);
  const std::vector<Prompt> prompts = load_prompts(path);
  ASSERT_EQ(prompts.size(), 100U);
  EXPECT_TRUE(prompts[0].chat);
  EXPECT_NE(prompts[0].messages[0].content.find("\n\nA) 0\nB) 4\nC) 2\nD) 6"), std::string::npos);
}

TEST(Prompts, EmptyAndMissingFiles) {
  const test::TempDir scratch;
  write_text_file(scratch / "empty.txt", " \n<|endoftext|>\n");
  test::expect_input_error_with_prefix([&] { load_prompts(scratch / "empty.txt"); }, scratch / "empty.txt: no prompts");
  write_text_file(scratch / "empty.jsonl", "\n\n");
  test::expect_input_error_with_prefix([&] { load_prompts(scratch / "empty.jsonl"); }, scratch / "empty.jsonl: no prompts");
  test::expect_input_error_with_prefix([&] { load_prompts(scratch / "absent.txt"); }, scratch / "absent.txt: ");
  test::expect_input_error_with_prefix([&] { load_prompts(scratch / "absent.jsonl"); }, scratch / "absent.jsonl: ");
}

}  // namespace
}  // namespace oscar::eval
