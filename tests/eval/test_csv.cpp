// The CSV parser and line helpers behind the evaluation loaders: RFC 4180 edge cases by hand, and a tricky
// file compared with Python's csv module (the reader the data sets were written with).
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../io/io_test_support.h"
#include "core/error.h"
#include "eval/csv.h"

namespace oscar::eval {
namespace {

using Rows = std::vector<CsvRow>;
using test::input_error_message;

TEST(Csv, PlainRecordsWithAndWithoutFinalNewline) {
  EXPECT_EQ(parse_csv("a,b,c\n1,2,3\n", "t.csv"), (Rows{{"a", "b", "c"}, {"1", "2", "3"}}));
  EXPECT_EQ(parse_csv("a,b,c\n1,2,3", "t.csv"), (Rows{{"a", "b", "c"}, {"1", "2", "3"}}));
}

TEST(Csv, QuotedFieldsHoldCommasDoubledQuotesAndLineBreaks) {
  const std::string text = "\"x, y\",\"say \"\"hi\"\"\",\"two\nlines\",\"crlf\r\ninside\"\n";
  EXPECT_EQ(parse_csv(text, "t.csv"), (Rows{{"x, y", "say \"hi\"", "two\nlines", "crlf\r\ninside"}}));
}

TEST(Csv, EmptyFieldsAndEmptyQuotedFields) {
  EXPECT_EQ(parse_csv(",,\n\"\",a,\n", "t.csv"), (Rows{{"", "", ""}, {"", "a", ""}}));
  EXPECT_EQ(parse_csv("\"\"\n", "t.csv"), (Rows{{""}}));  // a quoted empty field is a record, not a blank line
}

TEST(Csv, CrlfAndLoneCrLineEnds) {
  EXPECT_EQ(parse_csv("a,b\r\nc,d\r\n", "t.csv"), (Rows{{"a", "b"}, {"c", "d"}}));
  EXPECT_EQ(parse_csv("a,b\rc,d", "t.csv"), (Rows{{"a", "b"}, {"c", "d"}}));
  EXPECT_EQ(parse_csv("\"q\"\r\n\"r\"", "t.csv"), (Rows{{"q"}, {"r"}}));
}

TEST(Csv, SkipsBomAndBlankLines) {
  EXPECT_EQ(parse_csv("\xEF\xBB\xBFh1,h2\n\n\r\n1,2\n\n", "t.csv"), (Rows{{"h1", "h2"}, {"1", "2"}}));
  EXPECT_TRUE(parse_csv("", "t.csv").empty());
  EXPECT_TRUE(parse_csv("\n\r\n", "t.csv").empty());
}

TEST(Csv, QuoteInsideUnquotedFieldIsLiteral) {
  EXPECT_EQ(parse_csv("5\" screen,b\n", "t.csv"), (Rows{{"5\" screen", "b"}}));
}

TEST(Csv, RecordsKnowTheLineTheyStartOn) {
  const std::vector<CsvRecord> records = parse_csv_records("h\n\"multi\nline\"\n\nlast\r\nend", "t.csv");
  ASSERT_EQ(records.size(), 4U);
  EXPECT_EQ(records[0].line, 1U);
  EXPECT_EQ(records[1].line, 2U);
  EXPECT_EQ(records[2].line, 5U);  // after the two-line record and a blank line
  EXPECT_EQ(records[3].line, 6U);
  EXPECT_EQ(records[3].fields, CsvRow{"end"});
  const std::vector<CsvRecord> cr_records = parse_csv_records("a\rb\r\"c\rd\"\re", "t.csv");  // old Mac line ends
  ASSERT_EQ(cr_records.size(), 4U);
  EXPECT_EQ(cr_records[2].fields, CsvRow{"c\rd"});
  EXPECT_EQ(cr_records[3].line, 5U);
}

TEST(Csv, UnterminatedQuoteNamesSourceAndLine) {
  const std::string message = input_error_message([] { parse_csv("a,b\nc,\"open\nstill open\n", "data/x.csv"); });
  EXPECT_NE(message.find("data/x.csv: line 2: "), std::string::npos) << message;
  EXPECT_NE(message.find("unterminated"), std::string::npos) << message;
}

TEST(Csv, TextAfterClosingQuoteIsAnError) {
  const std::string message = input_error_message([] { parse_csv("a\n\"b\"c,d\n", "y.csv"); });
  EXPECT_NE(message.find("y.csv: line 2: "), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "one-line message";
  EXPECT_THROW(parse_csv("\"b\" ,c\n", "y.csv"), InputError);
}

TEST(Csv, AgreesWithPythonCsvModule) {
  const test::TempDir scratch;
  const std::string csv_path = scratch / "tricky.csv";
  const std::string text =
      "\xEF\xBB\xBFquestion,choice0,choice1,choice2,choice3,answer\r\n"
      "\"Which, of these?\",\"He said \"\"no\"\"\",plain,\"multi\nline\nfield\",,2\r\n"
      "\n"
      "unquoted with spaces  ,  padded  ,\"\",\"a\"\"\",\"\"\"b\",3\n"
      "\"crlf\r\nin quotes\",x,y,z,\"w\",0\n"
      "caf\xC3\xA9 \xE2\x80\x94 unicode,\xF0\x9F\x98\x80,\"\xE4\xB8\xAD,\xE6\x96\x87\",4,5,1";
  std::ofstream(csv_path, std::ios::binary) << text;
  const std::string json_path = scratch / "python.json";
  const std::string program =
      "import csv, json, sys\n"
      "with open(sys.argv[1], newline='', encoding='utf-8-sig') as f:\n"
      "    rows = [row for row in csv.reader(f) if row]\n"
      "json.dump(rows, open(sys.argv[2], 'w'))\n";
  ASSERT_EQ(test::run_python(scratch, program, {csv_path, json_path}), 0);
  const Rows expected = nlohmann::json::parse(std::ifstream(json_path)).get<Rows>();
  ASSERT_EQ(expected.size(), 5U);
  EXPECT_EQ(parse_csv(read_text_file(csv_path), csv_path), expected);
}

TEST(ReadTextFile, ReadsBytesAndNamesMissingFiles) {
  const test::TempDir scratch;
  const std::string path = scratch / "bytes.txt";
  std::ofstream(path, std::ios::binary) << std::string("a\0b\r\n", 5);
  EXPECT_EQ(read_text_file(path), std::string("a\0b\r\n", 5));
  const std::string missing = scratch / "missing.csv";
  EXPECT_NE(input_error_message([&] { read_text_file(missing); }).find(missing + ": "), std::string::npos);
  EXPECT_NE(input_error_message([&] { read_text_file(scratch.path()); }).find(scratch.path() + ": "),
            std::string::npos);
}

TEST(TextLines, NumbersNonBlankLinesAndDropsLineEnds) {
  const std::vector<TextLine> lines = non_blank_lines("one\r\n\n  \ntwo\nthree");
  ASSERT_EQ(lines.size(), 3U);
  EXPECT_EQ(lines[0].number, 1U);
  EXPECT_EQ(lines[0].text, "one");
  EXPECT_EQ(lines[1].number, 4U);
  EXPECT_EQ(lines[2].number, 5U);
  EXPECT_EQ(lines[2].text, "three");
}

TEST(TextLines, JsonObjectErrorsNameSourceAndLine) {
  EXPECT_EQ(parse_jsonl_object({3, "{\"a\": 1}"}, "f.jsonl").at("a"), 1);
  const std::string invalid = input_error_message([] { parse_jsonl_object({7, "{\"a\": "}, "f.jsonl"); });
  EXPECT_EQ(invalid.rfind("f.jsonl: line 7: invalid JSON", 0), 0U) << invalid;
  const std::string array = input_error_message([] { parse_jsonl_object({2, "[1, 2]"}, "f.jsonl"); });
  EXPECT_EQ(array.rfind("f.jsonl: line 2: expected a JSON object", 0), 0U) << array;
}

TEST(Helpers, TrimAndExtension) {
  EXPECT_EQ(trim_whitespace(" \t\r\nab c\n "), "ab c");
  EXPECT_EQ(trim_whitespace(" \n"), "");
  EXPECT_EQ(lowercase_extension("dir.v1/Set.JSONL"), ".jsonl");
  EXPECT_EQ(lowercase_extension("dir.v1/noext"), "");
}

}  // namespace
}  // namespace oscar::eval
