// Multiple-choice sets: the real MMLU and ARC files in shared/data compared question by question with what
// Python's csv/json modules read from them, a GPQA-shaped CSV (the real set is gated) checked against a Python
// re-implementation of the documented shuffle, the simple-evals prompt, answer extraction compared with
// Python's re, and malformed files.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../io/io_test_support.h"
#include "core/error.h"
#include "eval/multiple_choice.h"

namespace oscar::eval {
namespace {

const std::string kData = OSCAR_SHARED_DATA;
const std::string kArc = kData + "/eval/arc_challenge_test.jsonl";
const std::string kMmlu = kData + "/eval/mmlu";

using test::write_text_file;

/// Runs `program` (argv[1] = its output path) and returns the JSON it wrote.
nlohmann::json python_json(const test::TempDir& scratch, const std::string& program,
                           const std::vector<std::string>& args = {}) {
  const std::string out = scratch / "python_out.json";
  std::vector<std::string> argv = {out};
  argv.insert(argv.end(), args.begin(), args.end());
  if (test::run_python(scratch, program, argv) != 0) {
    ADD_FAILURE() << "python failed";
    return nlohmann::json();
  }
  return nlohmann::json::parse(std::ifstream(out));
}

// --- MMLU ------------------------------------------------------------------------------------------------------

TEST(Mmlu, EveryFileMatchesPythonCsv) {
  const test::TempDir scratch;
  // Python's csv module, not our parser, says what each file holds.
  const nlohmann::json expected = python_json(scratch,
                                              "import csv, glob, json, os, sys\n"
                                              "out = {}\n"
                                              "for path in sorted(glob.glob(sys.argv[2] + '/*/*.csv')):\n"
                                              "    with open(path, newline='', encoding='utf-8') as f:\n"
                                              "        rows = list(csv.reader(f))\n"
                                              "    assert rows[0] == ['question', 'choice0', 'choice1', "
                                              "'choice2', 'choice3', 'answer'], path\n"
                                              "    out[path] = rows[1:]\n"
                                              "json.dump(out, open(sys.argv[1], 'w'))\n",
                                              {kMmlu});
  ASSERT_EQ(expected.size(), 114U) << "57 subjects x {test, dev}";
  size_t test_questions = 0;
  for (const auto& [path, rows] : expected.items()) {
    const std::vector<MultipleChoiceQuestion> questions = load_mmlu_csv(path);
    ASSERT_EQ(questions.size(), rows.size()) << path;
    const std::string stem = std::filesystem::path(path).stem().string();
    for (size_t i = 0; i < questions.size(); ++i) {
      const std::vector<std::string> row = rows[i].get<std::vector<std::string>>();
      ASSERT_EQ(questions[i].question, row[0]) << path << " row " << i;
      ASSERT_EQ(questions[i].choices, std::vector<std::string>(row.begin() + 1, row.begin() + 5)) << path;
      ASSERT_EQ(std::to_string(questions[i].answer), row[5]) << path << " row " << i;
      ASSERT_EQ(questions[i].id, stem + ":" + std::to_string(i));
    }
    if (path.find("/test/") != std::string::npos) test_questions += questions.size();
  }
  EXPECT_EQ(test_questions, 14042U) << "SOURCES.md: 14,042 test questions";
}

TEST(Mmlu, KnownFileFacts) {
  const std::string path = kMmlu + "/test/abstract_algebra_test.csv";
  const std::vector<MultipleChoiceQuestion> questions = load_mmlu_csv(path);
  ASSERT_EQ(questions.size(), 100U);
  EXPECT_EQ(questions[0].question,
            "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.");
  EXPECT_EQ(questions[0].choices, (std::vector<std::string>{"0", "4", "2", "6"}));
  EXPECT_EQ(questions[0].answer, 1);
  EXPECT_EQ(questions[2].choices[2], "0,1");  // a quoted field with a comma
  EXPECT_EQ(detect_multiple_choice_format(path), MultipleChoiceFormat::kMmluCsv);
  EXPECT_EQ(load_mmlu_csv(kMmlu + "/dev/abstract_algebra_dev.csv").size(), 5U);
}

TEST(Mmlu, HeaderlessLettersAndReorderedColumns) {
  const test::TempDir scratch;
  write_text_file(scratch / "orig.csv", "\"What, then?\",a,b,c,d,C\nSecond,e,f,g,h,A\n");
  const auto original = load_mmlu_csv(scratch / "orig.csv");
  ASSERT_EQ(original.size(), 2U);
  EXPECT_EQ(original[0].question, "What, then?");
  EXPECT_EQ(original[0].answer, 2);
  EXPECT_EQ(original[1].answer, 0);
  EXPECT_EQ(original[1].id, "orig:1");

  write_text_file(scratch / "reordered.csv", "answer,subject,question,choice0,choice1,choice2,choice3\n3,math,Q?,w,x,y,z\n");
  const auto reordered = load_multiple_choice(scratch / "reordered.csv");
  ASSERT_EQ(reordered.size(), 1U);
  EXPECT_EQ(reordered[0].question, "Q?");
  EXPECT_EQ(reordered[0].choices, (std::vector<std::string>{"w", "x", "y", "z"}));
  EXPECT_EQ(reordered[0].answer, 3);
}

TEST(Mmlu, MalformedFilesNameFileAndLine) {
  const test::TempDir scratch;
  const std::string header = "question,choice0,choice1,choice2,choice3,answer\n";
  const std::string bad_answer = scratch / "bad_answer.csv";
  write_text_file(bad_answer, header + "q1,a,b,c,d,0\n\"q2\nspans two lines\",a,b,c,d,7\n");
  test::expect_input_error_with_prefix([&] { load_mmlu_csv(bad_answer); }, bad_answer + ": line 3: ", "\"7\"");
  const std::string letter_e = scratch / "letter_e.csv";
  write_text_file(letter_e, "q,a,b,c,d,E\n");
  test::expect_input_error_with_prefix([&] { load_mmlu_csv(letter_e); }, letter_e + ": line 1: ");
  const std::string short_row = scratch / "short.csv";
  write_text_file(short_row, header + "q1,a,b,c,d,0\nq2,a,b,1\n");
  test::expect_input_error_with_prefix([&] { load_mmlu_csv(short_row); }, short_row + ": line 3: ", "expected 6 fields, found 4");
  const std::string missing_column = scratch / "missing.csv";
  write_text_file(missing_column, "question,choice0,choice1,choice2,answer\nq,a,b,c,0\n");
  test::expect_input_error_with_prefix([&] { load_mmlu_csv(missing_column); }, missing_column + ": line 1: ", "choice3");
  const std::string header_only = scratch / "header_only.csv";
  write_text_file(header_only, header);
  test::expect_input_error_with_prefix([&] { load_mmlu_csv(header_only); }, header_only + ": no questions");
  const std::string unterminated = scratch / "unterminated.csv";
  write_text_file(unterminated, header + "\"q,a,b,c,d,0\n");
  test::expect_input_error_with_prefix([&] { load_multiple_choice(unterminated); }, unterminated + ": line 2: ");
  test::expect_input_error_with_prefix([&] { load_mmlu_csv(scratch / "absent.csv"); }, scratch / "absent.csv: ");
}

// --- ARC -------------------------------------------------------------------------------------------------------

TEST(Arc, RealFileMatchesPythonJson) {
  const test::TempDir scratch;
  const nlohmann::json expected = python_json(scratch,
                                              "import json, sys\n"
                                              "out = []\n"
                                              "for line in open(sys.argv[2], encoding='utf-8'):\n"
                                              "    d = json.loads(line)\n"
                                              "    labels = [o['label'] for o in d['options']]\n"
                                              "    out.append([d['id'], d['question'], [o['text'] for o in "
                                              "d['options']], labels.index(d['answer'])])\n"
                                              "json.dump(out, open(sys.argv[1], 'w'))\n",
                                              {kArc});
  const std::vector<MultipleChoiceQuestion> questions = load_arc_jsonl(kArc);
  ASSERT_EQ(questions.size(), 1172U) << "ARC-Challenge test has 1,172 questions";
  ASSERT_EQ(expected.size(), questions.size());
  for (size_t i = 0; i < questions.size(); ++i) {
    ASSERT_EQ(questions[i].id, expected[i][0].get<std::string>()) << i;
    ASSERT_EQ(questions[i].question, expected[i][1].get<std::string>()) << i;
    ASSERT_EQ(questions[i].choices, expected[i][2].get<std::vector<std::string>>()) << i;
    ASSERT_EQ(questions[i].answer, expected[i][3].get<int>()) << i;
  }
}

TEST(Arc, ChoiceCountsAnswersAndFirstQuestion) {
  const std::vector<MultipleChoiceQuestion> questions = load_multiple_choice(kArc);
  ASSERT_EQ(questions.size(), 1172U);
  std::map<size_t, int> choice_counts;
  for (const MultipleChoiceQuestion& question : questions) {
    ++choice_counts[question.choices.size()];
    ASSERT_GE(question.answer, 0);
    ASSERT_LT(question.answer, static_cast<int>(question.choices.size()));
  }
  EXPECT_EQ(choice_counts.begin()->first, 3U);
  EXPECT_EQ(choice_counts.rbegin()->first, 5U);
  // The first line of the file, read by eye: answer "C".
  EXPECT_EQ(questions[0].id, "Mercury_7175875");
  EXPECT_EQ(questions[0].question,
            "An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely "
            "effect of this increase in rotation?");
  EXPECT_EQ(questions[0].choices,
            (std::vector<std::string>{"Planetary density will decrease.", "Planetary years will become longer.",
                                      "Planetary days will become shorter.",
                                      "Planetary gravity will become stronger."}));
  EXPECT_EQ(questions[0].answer, 2);
  EXPECT_EQ(detect_multiple_choice_format(kArc), MultipleChoiceFormat::kArcJsonl);
}

TEST(Arc, NumericLabelsAndMissingId) {
  const test::TempDir scratch;
  const std::string path = scratch / "numeric.jsonl";
  write_text_file(path,
             "\n{\"question\": \"Q\", \"options\": [{\"label\": \"1\", \"text\": \"a\"}, {\"label\": \"2\", "
             "\"text\": \"b\"}, {\"label\": \"3\", \"text\": \"c\"}], \"answer\": \"3\"}\r\n\n");
  const auto questions = load_arc_jsonl(path);
  ASSERT_EQ(questions.size(), 1U);
  EXPECT_EQ(questions[0].answer, 2);
  EXPECT_EQ(questions[0].id, "numeric:0");
}

TEST(Arc, MalformedLinesNameFileAndLine) {
  const test::TempDir scratch;
  const std::string good =
      R"({"question": "Q", "options": [{"label": "A", "text": "a"}, {"label": "B", "text": "b"}], "answer": "B"})";
  const auto check = [&](const std::string& name, const std::string& second_line, const std::string& also) {
    const std::string path = scratch / name;
    write_text_file(path, good + "\n" + second_line + "\n");
    test::expect_input_error_with_prefix([&] { load_arc_jsonl(path); }, path + ": line 2: ", also);
  };
  check("invalid.jsonl", R"({"question": "Q", "options": [)", "invalid JSON");
  check("not_object.jsonl", R"(["Q"])", "JSON object");
  check("bad_answer.jsonl",
        R"({"question": "Q", "options": [{"label": "A", "text": "a"}, {"label": "B", "text": "b"}], "answer": "F"})",
        "\"F\"");
  check("answer_number.jsonl",
        R"({"question": "Q", "options": [{"label": "A", "text": "a"}, {"label": "B", "text": "b"}], "answer": 1})",
        "answer");
  check("no_options.jsonl", R"({"question": "Q", "answer": "A"})", "options");
  check("one_option.jsonl", R"({"question": "Q", "options": [{"label": "A", "text": "a"}], "answer": "A"})",
        "1 options");
  check("option_text.jsonl",
        R"({"question": "Q", "options": [{"label": "A", "text": 5}, {"label": "B", "text": "b"}], "answer": "A"})",
        "\"text\"");
  check("no_question.jsonl",
        R"({"options": [{"label": "A", "text": "a"}, {"label": "B", "text": "b"}], "answer": "A"})", "\"question\"");
}

// --- GPQA ------------------------------------------------------------------------------------------------------

/// The first 27 columns of the released gpqa_main.csv, in their order.
const std::vector<std::string> kGpqaHeader = {
    "Pre-Revision Question", "Pre-Revision Correct Answer", "Pre-Revision Incorrect Answer 1",
    "Pre-Revision Incorrect Answer 2", "Pre-Revision Incorrect Answer 3", "Pre-Revision Explanation",
    "Self-reported question-writing time (minutes)", "Question", "Correct Answer", "Incorrect Answer 1",
    "Incorrect Answer 2", "Incorrect Answer 3", "Explanation", "Revision Comments (from Question Writer)",
    "Subdomain", "Writer's Difficulty Estimate", "Extra Revised Question", "Extra Revised Explanation",
    "Extra Revised Correct Answer", "Extra Revised Incorrect Answer 1", "Extra Revised Incorrect Answer 2",
    "Extra Revised Incorrect Answer 3", "Non-Expert Validator Accuracy", "Majority Non-Expert Vals Incorrect",
    "Expert Validator Accuracy", "Record ID", "High-level domain"};

/// RFC 4180 quoting, only where needed (as Python's csv.writer does).
std::string csv_field(const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string quoted = "\"";
  for (char c : field) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) line += (i ? "," : "") + csv_field(fields[i]);
  return line + "\r\n";
}

/// A GPQA row: the revised question and answers given, decoys in the pre-revision and extra-revised columns.
std::string gpqa_row(const std::vector<std::string>& revised, const std::string& record_id) {
  std::vector<std::string> fields;
  for (const std::string& column : kGpqaHeader) fields.push_back("decoy " + column);
  for (size_t k = 0; k < 5; ++k) fields[7 + k] = revised[k];  // Question .. Incorrect Answer 3
  fields[25] = record_id;
  return csv_line(fields);
}

std::string gpqa_csv() {
  std::string text = csv_line(kGpqaHeader);
  text += gpqa_row({"What is 2+2?", "4", "3", "5", "22"}, "rec1");
  text += gpqa_row({"Which, if any, \"quoted\" term\nspans lines?\n", "the \"right\" one, really\n", "wrong, 1",
                    "\"wrong\" 2", " wrong 3 "},
                   "rec2");
  text += gpqa_row({"A third question about caf\xC3\xA9s", "yes", "no", "maybe", "never"}, "");
  for (int i = 0; i < 5; ++i)
    text += gpqa_row({"Filler question " + std::to_string(i), "right " + std::to_string(i), "wrong a",
                      "wrong b", "wrong c"},
                     "rec" + std::to_string(4 + i));
  return text;
}

/// What Python's csv module and the documented FNV-1a/splitmix64 shuffle give for a GPQA file.
const char* const kPythonGpqa = R"(import csv, json, os, sys
M = (1 << 64) - 1
def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & M
    return h
def order(question):
    state, order = fnv1a64(question.encode('utf-8')), [0, 1, 2, 3]
    for i in (3, 2, 1):
        state = (state + 0x9e3779b97f4a7c15) & M
        z = state
        z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
        z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
        z ^= z >> 31
        j = z % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order
out = []
with open(sys.argv[2], newline='', encoding='utf-8') as f:
    for index, row in enumerate(csv.DictReader(f)):
        q = row['Question'].strip()
        answers = [row[k].strip() for k in ('Correct Answer', 'Incorrect Answer 1', 'Incorrect Answer 2',
                                            'Incorrect Answer 3')]
        perm = order(q)
        stem = os.path.splitext(os.path.basename(sys.argv[2]))[0]
        out.append([row['Record ID'] or '%s:%d' % (stem, index), q, [answers[k] for k in perm], perm.index(0)])
json.dump(out, open(sys.argv[1], 'w'))
)";

TEST(Gpqa, SelectsColumnsByNameAndShufflesAsDocumented) {
  const test::TempDir scratch;
  const std::string path = scratch / "gpqa_main.csv";
  write_text_file(path, gpqa_csv());
  const nlohmann::json expected = python_json(scratch, kPythonGpqa, {path});
  const std::vector<MultipleChoiceQuestion> questions = load_gpqa_csv(path);
  ASSERT_EQ(questions.size(), 8U);
  ASSERT_EQ(expected.size(), questions.size());
  std::map<int, int> answer_positions;
  for (size_t i = 0; i < questions.size(); ++i) {
    EXPECT_EQ(questions[i].id, expected[i][0].get<std::string>()) << i;
    EXPECT_EQ(questions[i].question, expected[i][1].get<std::string>()) << i;
    EXPECT_EQ(questions[i].choices, expected[i][2].get<std::vector<std::string>>()) << i;
    EXPECT_EQ(questions[i].answer, expected[i][3].get<int>()) << i;
    ++answer_positions[questions[i].answer];
  }
  EXPECT_GT(answer_positions.size(), 1U) << "the shuffle moves the correct answer away from A";
  // Facts by hand, independent of the Python model: quoting, trimming, and that the correct text is at answer.
  EXPECT_EQ(questions[1].question, "Which, if any, \"quoted\" term\nspans lines?");
  EXPECT_EQ(questions[1].choices[static_cast<size_t>(questions[1].answer)], "the \"right\" one, really");
  std::vector<std::string> sorted = questions[1].choices;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<std::string>{"\"wrong\" 2", "the \"right\" one, really", "wrong 3", "wrong, 1"}));
  EXPECT_EQ(questions[0].id, "rec1");
  EXPECT_EQ(questions[2].id, "gpqa_main:2");
  EXPECT_EQ(load_gpqa_csv(path)[1].choices, questions[1].choices) << "the same order every run";
  EXPECT_EQ(detect_multiple_choice_format(path), MultipleChoiceFormat::kGpqaCsv);
  EXPECT_EQ(load_multiple_choice(path).size(), 8U);
}

TEST(Gpqa, MalformedFilesNameFileAndLine) {
  const test::TempDir scratch;
  std::vector<std::string> no_third = kGpqaHeader;
  no_third.erase(std::find(no_third.begin(), no_third.end(), "Incorrect Answer 3"));
  const std::string missing = scratch / "missing.csv";
  write_text_file(missing, csv_line(no_third) + csv_line(std::vector<std::string>(no_third.size(), "x")));
  test::expect_input_error_with_prefix([&] { load_gpqa_csv(missing); }, missing + ": line 1: ", "\"Incorrect Answer 3\"");

  // Line 2-3 hold a two-line record, so the short row is on line 4.
  const std::string short_row = scratch / "short.csv";
  write_text_file(short_row, csv_line(kGpqaHeader) + gpqa_row({"two\nlines", "a", "b", "c", "d"}, "r") + "x,y,z\n");
  test::expect_input_error_with_prefix([&] { load_gpqa_csv(short_row); }, short_row + ": line 4: ", "expected 27 fields, found 3");

  const std::string empty_choice = scratch / "empty_choice.csv";
  write_text_file(empty_choice, csv_line(kGpqaHeader) + gpqa_row({"Q", "a", "b", "  \n", "d"}, "r"));
  test::expect_input_error_with_prefix([&] { load_gpqa_csv(empty_choice); }, empty_choice + ": line 2: ", "Incorrect Answer 2");

  const std::string header_only = scratch / "header_only.csv";
  write_text_file(header_only, csv_line(kGpqaHeader));
  test::expect_input_error_with_prefix([&] { load_multiple_choice(header_only); }, header_only + ": no questions");
}

TEST(MultipleChoiceFormat, RejectsOtherFiles) {
  const test::TempDir scratch;
  const std::string text = scratch / "notes.txt";
  write_text_file(text, "hello\n");
  test::expect_input_error_with_prefix([&] { detect_multiple_choice_format(text); }, text + ": ");
  const std::string prompts = scratch / "prompts.jsonl";
  write_text_file(prompts, "{\"text\": \"hello\"}\n");
  test::expect_input_error_with_prefix([&] { load_multiple_choice(prompts); }, prompts + ": line 1: ", "options");
}

// --- prompt and answers ----------------------------------------------------------------------------------------

TEST(SimpleEvals, RendersTheQueryTemplate) {
  MultipleChoiceQuestion question;
  question.question = "What is 2+2?";
  question.choices = {"3", "4", "5", "22"};
  EXPECT_EQ(render_simple_evals(question),
            "Answer the following multiple choice question. The last line of your response should be of the "
            "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step "
            "before answering.\n\nWhat is 2+2?\n\nA) 3\nB) 4\nC) 5\nD) 22");
  question.choices = {"x", "y", "z"};
  EXPECT_EQ(render_simple_evals(question),
            "Answer the following multiple choice question. The last line of your response should be of the "
            "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABC. Think step by step "
            "before answering.\n\nWhat is 2+2?\n\nA) x\nB) y\nC) z");
  question.choices.push_back("v");
  question.choices.push_back("w");
  EXPECT_NE(render_simple_evals(question).find("one of ABCDE."), std::string::npos);
  EXPECT_EQ(render_simple_evals(question).substr(render_simple_evals(question).size() - 10), "\nD) v\nE) w");
  EXPECT_EQ(answer_letter(0), 'A');
  EXPECT_EQ(answer_letter(4), 'E');
}

TEST(SimpleEvals, ExtractsAnswersByHand) {
  EXPECT_EQ(extract_answer("Answer: C", 4), 2);
  EXPECT_EQ(extract_answer("Let me think.\nThe sum is 4.\nAnswer:B", 4), 1);
  EXPECT_EQ(extract_answer("ANSWER :\n D", 4), 3);  // (?i) and \s, as simple-evals
  EXPECT_EQ(extract_answer("answer : B", 4), 1);
  EXPECT_EQ(extract_answer("Answer: b", 4), -1);   // captured lower case never equals the correct letter
  EXPECT_EQ(extract_answer("no answer here", 4), -1);
  EXPECT_EQ(extract_answer("The answer is C", 4), -1);
  EXPECT_EQ(extract_answer("Answer: E", 4), -1);   // beyond the choices
  EXPECT_EQ(extract_answer("Answer: E", 5), 4);
  EXPECT_EQ(extract_answer("Answer: D", 3), -1);
  EXPECT_EQ(extract_answer("Answer: E\nAnswer: B", 4), 1);  // the first match, not the first "Answer:"
  EXPECT_EQ(extract_answer("Answer: A then Answer: C", 4), 0);
  EXPECT_EQ(extract_answer("Answer:", 4), -1);
  EXPECT_EQ(extract_answer("", 4), -1);
  EXPECT_EQ(extract_answer("Answer: A", 0), -1);
}

TEST(SimpleEvals, ExtractionAgreesWithPythonRe) {
  const std::vector<std::string> responses = {
      "Answer: C", "answer:a", "ANSWER : D", "Answer:\n\tB", "Answer: b", "The answer is B.", "Answer - C",
      "Answers: C", "MyAnswer: D", "Answer: E\nAnswer: A", "Final Answer: $B$", "Answer: **C**", "Answer:  ",
      "x Answer :C y Answer: D", "Answer\n:\nA", "answer: E answer: d answer: C", "Answer: AB", ""};
  const test::TempDir scratch;
  const std::string responses_path = scratch / "responses.json";
  write_text_file(responses_path, nlohmann::json(responses).dump());
  const nlohmann::json python = python_json(scratch,
                                            "import json, re, sys\n"
                                            "responses = json.load(open(sys.argv[2]))\n"
                                            "pattern = r'(?i)Answer\\s*:\\s*([A-D])'\n"
                                            "out = []\n"
                                            "for r in responses:\n"
                                            "    m = re.search(pattern, r)\n"
                                            "    out.append('ABCD'.index(m.group(1)) if m and m.group(1) in 'ABCD' "
                                            "else -1)\n"
                                            "json.dump(out, open(sys.argv[1], 'w'))\n",
                                            {responses_path});
  ASSERT_EQ(python.size(), responses.size());
  for (size_t i = 0; i < responses.size(); ++i)
    EXPECT_EQ(extract_answer(responses[i], 4), python[i].get<int>()) << "response: " << responses[i];
}

}  // namespace
}  // namespace oscar::eval
