// Multiple-choice evaluation sets and the simple-evals prompt they are asked with: GPQA CSV, MMLU CSV, ARC
// JSONL, generic JSONL. Plain C++.
#pragma once

#include <string>
#include <vector>

namespace oscar::eval {

struct MultipleChoiceQuestion {
  std::string id;                    ///< "<file stem>:<index>" (or the set's own id)
  std::string question;
  std::vector<std::string> choices;  ///< in the order they are shown (A, B, ...)
  int answer = 0;                    ///< index of the correct choice
};

enum class MultipleChoiceFormat { kGpqaCsv, kMmluCsv, kArcJsonl, kGenericJsonl };

/// GPQA CSV (the released gpqa_*.csv): columns are selected by name from the header row - "Question",
/// "Correct Answer", "Incorrect Answer 1".."3"; the others ("Pre-Revision Question", ...) are ignored, and
/// "Record ID", when present, becomes the id. Texts are trimmed of surrounding whitespace (GPQA's cells often
/// end in a newline; lm-evaluation-harness strips them too).
/// The four choices are shuffled so the correct answer is not always A, and every run, machine and compiler
/// shows the same order (std::hash and std::shuffle are not stable across standard libraries):
///   seed = FNV-1a 64 of the trimmed question's UTF-8 bytes (offset 0xcbf29ce484222325, prime 0x100000001b3)
///   order = [correct, incorrect 1, incorrect 2, incorrect 3]
///   for i = 3, 2, 1: seed = splitmix64 step of seed; swap(order[i], order[next % (i + 1)])
/// where the splitmix64 step is seed += 0x9e3779b97f4a7c15, z = seed, z = (z ^ z >> 30) * 0xbf58476d1ce4e5b9,
/// z = (z ^ z >> 27) * 0x94d049bb133111eb, next = z ^ z >> 31 (all modulo 2^64). simple-evals instead draws
/// its permutations from Python's random.Random(0) over the file order, which depends on the row order and
/// on how many examples are asked for.
std::vector<MultipleChoiceQuestion> load_gpqa_csv(const std::string& path);
/// MMLU CSV: header "question,choice0,choice1,choice2,choice3,answer" (columns selected by name, extra ones
/// ignored) with answer 0-3 (or A-D), or the original header-less rows "question,A,B,C,D,letter"; a first
/// row with "question" and "answer" fields is the header. Id "<file stem>:<index>".
std::vector<MultipleChoiceQuestion> load_mmlu_csv(const std::string& path);
/// ARC JSONL: {"question": str, "options": [{"label": "A", "text": str}, ...], "answer": "A"} per line (2-26
/// options; the answer is matched against the labels, which may also be "1".."5"; "id" is used when present).
std::vector<MultipleChoiceQuestion> load_arc_jsonl(const std::string& path);
/// Generic JSONL: {"question": str, "choices": [str, ...], "answer": ...} per non-blank line, 2-26 choices,
/// kept in the file's order (not shuffled) and as written (not trimmed); other keys are ignored. "answer" is
///   - an integer: the 0-based choice index (0 to count - 1);
///   - a one-character string "A".."Z" (upper case only): the choice with that letter, which must be among the
///     choices - unless it is not (e.g. "Z" of 3) and is the text of a choice, which is then the answer;
///   - any other string: the text of exactly one choice (compared byte for byte).
/// A letter that is in range while another choice's text is that same letter (choices ["B", "A"], answer
/// "A") is ambiguous and rejected, as is a text answer that several choices share; give the index instead.
/// "id", a string or a number (written as JSON writes it: 7, 1.5), is used when present and not null or "";
/// otherwise "<file stem>:<index>". Beyond the errors below, a line throws for a missing, non-string or blank
/// "question", a missing or non-array "choices", a choice that is not a string, too few or too many choices,
/// and an "answer" that is missing, of another type, out of range or matches no choice.
std::vector<MultipleChoiceQuestion> load_generic_jsonl(const std::string& path);

/// By content: .jsonl whose first non-blank line has "options" -> ARC, else has "choices" -> generic (a line
/// with both is ARC); .csv with a "Correct Answer" column -> GPQA; other .csv -> MMLU.
/// Throws oscar::InputError naming the file when it is none of them. The loaders throw
/// oscar::InputError("<path>: line N: <problem>") for a missing column, a row of the wrong width, a bad answer,
/// a line that is not JSON or not an object, and ("<path>: no questions") for a file without any.
MultipleChoiceFormat detect_multiple_choice_format(const std::string& path);
std::vector<MultipleChoiceQuestion> load_multiple_choice(const std::string& path);

/// 'A' + index.
char answer_letter(int index);
/// simple-evals' QUERY_TEMPLATE_MULTICHOICE: "Answer the following multiple choice question. The last line of
/// your response should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is one
/// of ABCD. Think step by step before answering.\n\n{question}\n\nA) {A}\nB) {B}\nC) {C}\nD) {D}" (the letter
/// list follows the number of choices).
std::string render_simple_evals(const MultipleChoiceQuestion& question);
/// The answer index from a response, scored as simple-evals' common.py does: the first match of
/// "(?i)Answer\s*:\s*([A-D])" (the letter range follows `num_choices`, at most 26), compared with the upper-case
/// correct letter. "Answer" is case-insensitive there, so "answer: C" counts; a lower-case letter is captured
/// but never equals the correct one, so it gives -1 here (a wrong answer, as there). -1 also when nothing
/// matches; a letter beyond the choices does not match, so the search goes on to a later "Answer:".
int extract_answer(const std::string& response, int num_choices);

}  // namespace oscar::eval
