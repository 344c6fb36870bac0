// Generic multiple-choice JSONL: a small file read field by field (answers as index, letter and text, ids from
// the file or "<stem>:<index>"), every malformed line naming the file and its line, format detection against
// ARC, and the file as prompts.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "../io/io_test_support.h"
#include "core/error.h"
#include "eval/multiple_choice.h"
#include "eval/prompt_sources.h"

namespace oscar::eval {
namespace {

using test::write_text_file;

/// Line numbers count blank lines: the questions are on lines 1, 3, 4, 6 and 7.
const std::string kGeneric =
    R"({"question": "What is 2+2?", "choices": ["3", "4", "5", "22"], "answer": 1, "id": "sum-1"})" "\n"
    "\n"
    R"({"question": "Which, if any, \"quoted\" term?", "choices": ["a, b", " padded "], "answer": "B"})" "\r\n"
    R"({"question": "Capital of France?", "choices": ["Berlin", "Paris", "Rome"], "answer": "Paris", "id": 42, "extra": [1]})" "\n"
    "   \n"
    R"({"question": "caf\u00e9?", "choices": ["no", "yes"], "answer": "A", "id": null})" "\n"
    R"({"id": "", "answer": "Z", "choices": ["X", "Y", "Z"], "question": "Last letter?"})" "\n";

TEST(GenericJsonl, ReadsEveryField) {
  const test::TempDir scratch;
  const std::string path = scratch / "generic_set.jsonl";
  write_text_file(path, kGeneric);
  const std::vector<MultipleChoiceQuestion> questions = load_generic_jsonl(path);
  ASSERT_EQ(questions.size(), 5U);

  EXPECT_EQ(questions[0].id, "sum-1");
  EXPECT_EQ(questions[0].question, "What is 2+2?");
  EXPECT_EQ(questions[0].choices, (std::vector<std::string>{"3", "4", "5", "22"}));
  EXPECT_EQ(questions[0].answer, 1);  // an index

  EXPECT_EQ(questions[1].id, "generic_set:1");  // no "id": the stem and the 0-based question index
  EXPECT_EQ(questions[1].question, "Which, if any, \"quoted\" term?");
  EXPECT_EQ(questions[1].choices, (std::vector<std::string>{"a, b", " padded "}));  // not trimmed
  EXPECT_EQ(questions[1].answer, 1);  // a letter

  EXPECT_EQ(questions[2].id, "42");  // a number id
  EXPECT_EQ(questions[2].question, "Capital of France?");
  EXPECT_EQ(questions[2].choices, (std::vector<std::string>{"Berlin", "Paris", "Rome"}));
  EXPECT_EQ(questions[2].answer, 1);  // a choice's text

  EXPECT_EQ(questions[3].id, "generic_set:3");  // null id
  EXPECT_EQ(questions[3].question, "caf\xC3\xA9?");
  EXPECT_EQ(questions[3].choices, (std::vector<std::string>{"no", "yes"}));
  EXPECT_EQ(questions[3].answer, 0);

  EXPECT_EQ(questions[4].id, "generic_set:4");  // empty id
  EXPECT_EQ(questions[4].choices, (std::vector<std::string>{"X", "Y", "Z"}));
  EXPECT_EQ(questions[4].answer, 2);  // "Z" is beyond C, so it is the text of the third choice

  EXPECT_EQ(load_multiple_choice(path).size(), questions.size());
  EXPECT_EQ(load_multiple_choice(path)[2].answer, 1);
}

TEST(GenericJsonl, LettersAgreeingWithTextsAndManyChoices) {
  const test::TempDir scratch;
  const std::string path = scratch / "letters.jsonl";
  std::string many = R"({"question": "Q", "choices": [)";
  for (char c = 'a'; c <= 'z'; ++c) many += std::string(c == 'a' ? "" : ", ") + "\"" + c + "\"";
  many += R"(], "answer": "Z", "id": 1.5})";
  write_text_file(path, R"({"question": "Q", "choices": ["A", "B", "C"], "answer": "B"})" "\n" + many + "\n");
  const auto questions = load_generic_jsonl(path);
  ASSERT_EQ(questions.size(), 2U);
  EXPECT_EQ(questions[0].answer, 1);  // letter B and text "B" agree
  EXPECT_EQ(questions[1].choices.size(), 26U);
  EXPECT_EQ(questions[1].answer, 25);
  EXPECT_EQ(questions[1].id, "1.5");
}

TEST(GenericJsonl, MalformedLinesNameFileAndLine) {
  const test::TempDir scratch;
  const std::string good = R"({"question": "Q", "choices": ["a", "b"], "answer": 0})";
  // The bad line is line 4: a good line, a blank line, a good line, then it.
  const auto check = [&](const std::string& name, const std::string& bad_line, const std::string& also) {
    const std::string path = scratch / name;
    write_text_file(path, good + "\n\n" + good + "\n" + bad_line + "\n" + good + "\n");
    test::expect_input_error_with_prefix([&] { load_generic_jsonl(path); }, path + ": line 4: ", also);
    test::expect_input_error_with_prefix([&] { load_multiple_choice(path); }, path + ": line 4: ", also);
  };
  check("invalid.jsonl", R"({"question": "Q", "choices": [)", "invalid JSON");
  check("not_object.jsonl", R"(["Q", ["a", "b"], 0])", "expected a JSON object, found array");
  check("no_question.jsonl", R"({"choices": ["a", "b"], "answer": 0})", "no \"question\"");
  check("question_number.jsonl", R"({"question": 7, "choices": ["a", "b"], "answer": 0})",
        "\"question\" is not a string");
  check("question_blank.jsonl", R"({"question": "  ", "choices": ["a", "b"], "answer": 0})", "empty \"question\"");
  check("no_choices.jsonl", R"({"question": "Q", "answer": 0})", "no \"choices\" array");
  check("choices_string.jsonl", R"({"question": "Q", "choices": "a, b", "answer": 0})", "no \"choices\" array");
  check("choice_number.jsonl", R"({"question": "Q", "choices": ["a", 2], "answer": 0})",
        "choice 1 is not a string");
  check("choice_object.jsonl", R"({"question": "Q", "choices": [{"text": "a"}, "b"], "answer": 0})",
        "choice 0 is not a string");
  check("one_choice.jsonl", R"({"question": "Q", "choices": ["a"], "answer": 0})", "1 choices, expected 2-26");
  check("no_choice.jsonl", R"({"question": "Q", "choices": [], "answer": 0})", "0 choices, expected 2-26");
  std::string too_many = R"({"question": "Q", "choices": [)";
  for (int k = 0; k < 27; ++k) too_many += std::string(k ? ", " : "") + "\"c" + std::to_string(k) + "\"";
  check("too_many.jsonl", too_many + R"(], "answer": 0})", "27 choices, expected 2-26");
  check("no_answer.jsonl", R"({"question": "Q", "choices": ["a", "b"]})", "no \"answer\"");
  check("answer_index_high.jsonl", R"({"question": "Q", "choices": ["a", "b"], "answer": 2})",
        "answer 2 is out of range 0-1");
  check("answer_index_negative.jsonl", R"({"question": "Q", "choices": ["a", "b"], "answer": -1})",
        "answer -1 is out of range 0-1");
  check("answer_index_huge.jsonl", R"({"question": "Q", "choices": ["a", "b"], "answer": 18446744073709551615})",
        "out of range");
  check("answer_letter_high.jsonl", R"({"question": "Q", "choices": ["a", "b", "c"], "answer": "D"})",
        "answer \"D\" is out of range A-C");
  check("answer_lower_letter.jsonl", R"({"question": "Q", "choices": ["x", "y"], "answer": "b"})",
        "answer \"b\" matches no choice");
  check("answer_text.jsonl", R"({"question": "Q", "choices": ["yes", "no"], "answer": "maybe"})",
        "answer \"maybe\" matches no choice");
  check("answer_float.jsonl", R"({"question": "Q", "choices": ["a", "b"], "answer": 1.0})",
        "\"answer\" is not an integer or a string");
  check("answer_null.jsonl", R"({"question": "Q", "choices": ["a", "b"], "answer": null})",
        "\"answer\" is not an integer or a string");
  check("answer_ambiguous.jsonl", R"({"question": "Q", "choices": ["B", "A"], "answer": "A"})", "ambiguous");
  check("answer_shared_text.jsonl", R"({"question": "Q", "choices": ["same", "same"], "answer": "same"})",
        "more than one choice");
  check("id_object.jsonl", R"({"question": "Q", "choices": ["a", "b"], "answer": 0, "id": {"n": 1}})",
        "\"id\" is not a string or a number");

  // The first line is checked by detection too, with the same message.
  const std::string first = scratch / "first.jsonl";
  write_text_file(first, "\n" + std::string(R"({"question": "Q", "choices": ["a", "b"], "answer": 5})") + "\n");
  test::expect_input_error_with_prefix([&] { load_multiple_choice(first); }, first + ": line 2: ", "out of range");

  const std::string empty = scratch / "empty.jsonl";
  write_text_file(empty, "\n  \n\r\n");
  test::expect_input_error_with_prefix([&] { load_generic_jsonl(empty); }, empty + ": no questions");
  test::expect_input_error_with_prefix([&] { load_multiple_choice(empty); }, empty + ": no questions");
  test::expect_input_error_with_prefix([&] { load_generic_jsonl(scratch / "absent.jsonl"); },
                                       scratch / "absent.jsonl: ");
}

TEST(GenericJsonl, DetectionTellsChoicesFromOptions) {
  const test::TempDir scratch;
  const std::string generic = scratch / "generic.jsonl";
  write_text_file(generic, "\n" + std::string(R"({"question": "Q", "choices": ["a", "b"], "answer": 0})") + "\n");
  EXPECT_EQ(detect_multiple_choice_format(generic), MultipleChoiceFormat::kGenericJsonl);
  EXPECT_EQ(detect_data_kind(generic), DataKind::kMultipleChoice);

  const std::string arc = scratch / "arc.jsonl";
  write_text_file(arc,
                  R"({"question": "Q", "options": [{"label": "A", "text": "a"}, {"label": "B", "text": "b"}], )"
                  R"("answer": "B"})" "\n");
  EXPECT_EQ(detect_multiple_choice_format(arc), MultipleChoiceFormat::kArcJsonl);
  EXPECT_EQ(detect_data_kind(arc), DataKind::kMultipleChoice);
  EXPECT_EQ(load_multiple_choice(arc)[0].answer, 1);

  // A line with both keys stays ARC, as before the generic format existed.
  const std::string both = scratch / "both.jsonl";
  write_text_file(both,
                  R"({"question": "Q", "options": [{"label": "A", "text": "a"}, {"label": "B", "text": "b"}], )"
                  R"("choices": ["x", "y"], "answer": "A"})" "\n");
  EXPECT_EQ(detect_multiple_choice_format(both), MultipleChoiceFormat::kArcJsonl);
  EXPECT_EQ(load_multiple_choice(both)[0].choices, (std::vector<std::string>{"a", "b"}));

  // Each loader insists on its own key.
  test::expect_input_error_with_prefix([&] { load_arc_jsonl(generic); }, generic + ": line 2: ", "\"options\"");
  test::expect_input_error_with_prefix([&] { load_generic_jsonl(arc); }, arc + ": line 1: ", "\"choices\"");

  const std::string neither = scratch / "neither.jsonl";
  write_text_file(neither, R"({"question": "Q", "answers": ["a", "b"]})" "\n");
  test::expect_input_error_with_prefix([&] { detect_multiple_choice_format(neither); }, neither + ": line 1: ",
                                       "\"choices\"");
  test::expect_input_error_with_prefix([&] { detect_data_kind(neither); }, neither + ": line 1: ", "\"choices\"");
}

TEST(GenericJsonl, PromptsAreOneUserMessageEach) {
  const test::TempDir scratch;
  const std::string path = scratch / "generic_set.jsonl";
  write_text_file(path, kGeneric);
  const std::vector<Prompt> prompts = load_prompts(path);
  const std::vector<MultipleChoiceQuestion> questions = load_generic_jsonl(path);
  ASSERT_EQ(prompts.size(), questions.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_TRUE(prompts[i].chat) << i;
    EXPECT_TRUE(prompts[i].text.empty()) << i;
    ASSERT_EQ(prompts[i].messages.size(), 1U) << i;
    EXPECT_EQ(prompts[i].messages[0].role, "user") << i;
    EXPECT_EQ(prompts[i].messages[0].content, render_simple_evals(questions[i])) << i;
    EXPECT_EQ(prompts[i].source, path + ":" + std::to_string(i));
  }
  // By hand, for the first question: the template with the choices in file order.
  EXPECT_EQ(prompts[0].messages[0].content,
            "Answer the following multiple choice question. The last line of your response should be of the "
            "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step "
            "before answering.\n\nWhat is 2+2?\n\nA) 3\nB) 4\nC) 5\nD) 22");
  EXPECT_NE(prompts[1].messages[0].content.find("one of AB."), std::string::npos);
  EXPECT_NE(prompts[1].messages[0].content.find("\n\nA) a, b\nB)  padded "), std::string::npos);

  const std::string bad = scratch / "bad.jsonl";
  write_text_file(bad, kGeneric + R"({"question": "Q", "choices": ["a", "b"], "answer": "c"})" "\n");
  test::expect_input_error_with_prefix([&] { load_prompts(bad); }, bad + ": line 8: ", "matches no choice");
}

}  // namespace
}  // namespace oscar::eval
