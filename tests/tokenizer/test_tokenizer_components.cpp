// The pieces under the tokenizers (merge loop, byte-level alphabet, literal matching) and the loaders on small
// hand-written vocabularies: features the real files do not exercise, and malformed input.
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/bpe.h"
#include "model/chat_template.h"
#include "model/gguf_file.h"
#include "model/gguf_tokenizer.h"
#include "model/text_split.h"
#include "tokenizer_test_support.h"

namespace oscar::model::test {
namespace {

using nlohmann::json;

// ---- merge loop, alphabet, literals ----

TEST(MergeAdjacent, LowestPriorityFirstAndLeftmostOnTies) {
  // (0,0) -> 1 at priority 1, (1,0) -> 2 at priority 0. "0 0 0": the tie between the two (0,0) pairs goes
  // left, giving "1 0", which then merges to "2".
  auto rule = [](int l, int r, bpe::Merge& m) {
    if (l == 0 && r == 0) m = {1, 1.0};
    else if (l == 1 && r == 0) m = {2, 0.0};
    else return false;
    return true;
  };
  std::vector<int> ids{0, 0, 0};
  bpe::merge_adjacent(ids, rule);
  EXPECT_EQ(ids, (std::vector<int>{2}));
  ids = {0, 0, 0, 0};  // "1 0 0" -> (1,0) wins over (0,0) -> "2 0"
  bpe::merge_adjacent(ids, rule);
  EXPECT_EQ(ids, (std::vector<int>{2, 0}));
  ids = {5, 0, 6};
  bpe::merge_adjacent(ids, rule);
  EXPECT_EQ(ids, (std::vector<int>{5, 0, 6}));
  ids = {};
  bpe::merge_adjacent(ids, rule);
  EXPECT_TRUE(ids.empty());
}

TEST(ByteLevelAlphabet, MatchesGpt2sTable) {
  const auto& a = bpe::byte_level_alphabet();
  EXPECT_EQ(a[' '], "\xC4\xA0");   // U+0120 "Ġ"
  EXPECT_EQ(a['\n'], "\xC4\x8A");  // U+010A "Ċ"
  EXPECT_EQ(a[0x00], "\xC4\x80");  // U+0100
  EXPECT_EQ(a[0xAD], "\xC5\x83");  // soft hyphen is not printable: U+0143
  EXPECT_EQ(a['A'], "A");
  EXPECT_EQ(a[0xFF], "\xC3\xBF");  // "ÿ" stands for itself
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  std::string back;
  ASSERT_TRUE(bpe::byte_level_to_bytes(bpe::bytes_to_byte_level(all), back));
  EXPECT_EQ(back, all);
  EXPECT_FALSE(bpe::byte_level_to_bytes("\xE4\xB8\xAD", back));  // 中 is outside the alphabet
}

TEST(BytePieces, ParseAndFormat) {
  EXPECT_EQ(bpe::parse_byte_piece("<0x0A>"), 10);
  EXPECT_EQ(bpe::parse_byte_piece("<0xff>"), 255);
  EXPECT_EQ(bpe::parse_byte_piece("<0x0G>"), -1);
  EXPECT_EQ(bpe::parse_byte_piece("0x0A"), -1);
  EXPECT_EQ(bpe::byte_piece(0xAB), "<0xAB>");
}

TEST(LiteralMatcher, LeftmostThenLongest) {
  text::LiteralMatcher m;
  m.add("<a>", 1);
  m.add("<a>b", 2);
  m.add("b", 3);
  const auto segments = m.split("x<a>by<a>");
  ASSERT_EQ(segments.size(), 4u);
  EXPECT_EQ(segments[0].text, "x");
  EXPECT_EQ(segments[1].token, 2);
  EXPECT_EQ(segments[2].text, "y");
  EXPECT_EQ(segments[3].token, 1);
}

TEST(RegexSplit, IsolatedKeepsMatchesAndGaps) {
  const text::Regex digits(R"(\p{N}+)");
  EXPECT_EQ(text::split_isolated(digits, "ab12cd3"), (std::vector<std::string>{"ab", "12", "cd", "3"}));
  EXPECT_THROW(text::Regex("(unclosed"), std::invalid_argument);
}

// ---- hand-written tokenizer.json files ----

/// A Llama-3-like byte-level vocabulary: the 256 alphabet characters, a few merges, chat markers, and a
/// post-processor that adds <|begin_of_text|>. Merges are written as pairs (the newer format).
json llama3_like(bool ignore_merges) {
  json vocab = json::object();
  const auto& alphabet = bpe::byte_level_alphabet();
  for (int b = 0; b < 256; ++b) vocab[alphabet[static_cast<std::size_t>(b)]] = b;
  vocab["he"] = 256;
  vocab["ll"] = 257;
  vocab["hell"] = 258;
  vocab["hello"] = 259;
  vocab["\xC4\xA0w"] = 260;      // "Ġw"
  vocab["\xC4\xA0world"] = 261;  // reachable only whole (no merges lead to it)
  json merges = json::array({json::array({"h", "e"}), json::array({"l", "l"}), json::array({"he", "ll"}),
                             json::array({"hell", "o"}), json::array({"\xC4\xA0", "w"})});
  json added = json::array();
  int id = 300;
  for (const char* marker : {"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"})
    added.push_back({{"id", id++}, {"content", marker}, {"special", true}, {"normalized", false}});
  return {
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array({{{"type", "Split"}, {"pattern", {{"Regex", R"(\p{L}+| ?\p{L}+|\s+)"}}}, {"behavior", "Isolated"}},
                      {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
      {"post_processor",
       {{"type", "Sequence"},
        {"processors",
         json::array({{{"type", "ByteLevel"}},
                      {{"type", "TemplateProcessing"},
                       {"single", json::array({{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                                               {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}}})}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}, {"ignore_merges", ignore_merges}}},
  };
}

TEST(HfTokenizerJson, ByteLevelWithPairMergesAndPostProcessorBos) {
  ScratchDir dir;
  dir.write("tokenizer.json", llama3_like(false).dump());
  const auto t = load_hf_tokenizer(dir.path());
  const int o = 'o', r = 'r', l = 'l', d = 'd';  // byte-level ids are the byte values here
  EXPECT_EQ(t->encode("hello"), (std::vector<int>{259}));
  EXPECT_EQ(t->encode("hello world"), (std::vector<int>{259, 260, o, r, l, d}));
  EXPECT_EQ(t->bos(), 300);  // no tokenizer_config.json: the template's leading special token
  EXPECT_TRUE(t->adds_bos());
  EXPECT_EQ(t->eos(), -1);
  EXPECT_EQ(t->encode_with_bos("hello").front(), 300);
  EXPECT_EQ(t->decode(t->encode_with_bos("hello world")), "hello world");
  EXPECT_EQ(detect_chat_template(*t), ChatTemplate::kLlama3);
  const std::string chat = render_chat(ChatTemplate::kLlama3, {{"user", "hello"}}, true);
  const std::vector<int> ids = t->encode(chat);
  EXPECT_EQ(ids, (std::vector<int>{300, 301, 'u', 's', 'e', 'r', 302, '\n', '\n', 259, 303, 301, 'a', 's', 's', 'i',
                                   's', 't', 'a', 'n', 't', 302, '\n', '\n'}));
  EXPECT_EQ(t->decode(ids, true), chat);
}

TEST(HfTokenizerJson, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  ScratchDir dir;
  dir.write("tokenizer.json", llama3_like(true).dump());
  EXPECT_EQ(load_hf_tokenizer(dir.path())->encode("hello world"), (std::vector<int>{259, 261}));
}

TEST(HfTokenizerJson, ConfigOverridesBosAndAddBos) {
  ScratchDir dir;
  dir.write("tokenizer.json", llama3_like(false).dump());
  dir.write("tokenizer_config.json",
            R"({"bos_token": {"content": "<|begin_of_text|>"}, "eos_token": "<|eot_id|>", "add_bos_token": false})");
  const auto t = load_hf_tokenizer(dir.path());
  EXPECT_EQ(t->bos(), 300);
  EXPECT_EQ(t->eos(), 303);
  EXPECT_FALSE(t->adds_bos());
}

/// A SentencePiece-style vocabulary with byte fallback, a Metaspace pre-tokenizer and "a b" string merges.
json sentencepiece_like() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) vocab[bpe::byte_piece(static_cast<unsigned char>(b))] = 3 + b;
  vocab["\xE2\x96\x81"] = 259;
  vocab["a"] = 260;
  vocab["b"] = 261;
  vocab["\xE2\x96\x81" "a"] = 262;
  vocab["ab"] = 263;
  vocab["\xE2\x96\x81" "ab"] = 264;
  return {
      {"added_tokens", json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                    {{"id", 1}, {"content", "<s>"}, {"special", true}},
                                    {{"id", 2}, {"content", "</s>"}, {"special", true}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}, {"split", true}}},
      {"decoder", {{"type", "Sequence"},
                   {"decoders", json::array({{{"type", "ByteFallback"}},
                                             {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}}})}}},
      {"model",
       {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"\xE2\x96\x81 a", "a b", "\xE2\x96\x81" "a b"})},
        {"byte_fallback", true}, {"unk_token", "<unk>"}}},
  };
}

TEST(HfTokenizerJson, MetaspaceAndByteFallback) {
  ScratchDir dir;
  dir.write("tokenizer.json", sentencepiece_like().dump());
  dir.write("tokenizer_config.json", R"({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true})");
  const auto t = load_hf_tokenizer(dir.path());
  EXPECT_EQ(t->encode("ab ab"), (std::vector<int>{264, 264}));
  EXPECT_EQ(t->encode("\xC3\xA9"), (std::vector<int>{259, 3 + 0xC3, 3 + 0xA9}));  // "é" via <0xC3><0xA9>
  EXPECT_EQ(t->decode({259, 3 + 0xC3, 3 + 0xA9}), "\xC3\xA9");
  EXPECT_EQ(t->decode(t->encode_with_bos("ab  a b\xC3\xA9")), "ab  a b\xC3\xA9");
  EXPECT_EQ(t->encode_with_bos("a").front(), 1);
  EXPECT_EQ(t->eos(), 2);
  EXPECT_EQ(t->decode({1, 264, 2}, true), "<s> ab</s>");
}

/// load_hf_tokenizer's InputError must start with the offending file's path and say what is wrong.
void expect_input_error(const std::string& directory, const std::string& file, const std::string& problem) {
  try {
    load_hf_tokenizer(directory);
    ADD_FAILURE() << "no InputError for " << problem;
  } catch (const InputError& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind(file + ": ", 0), 0u) << message;
    EXPECT_NE(message.find(problem), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(HfTokenizerJson, MalformedFilesAreInputErrorsNamingTheFile) {
  ScratchDir dir;
  const std::string path = dir.path() + "/tokenizer.json";
  expect_input_error(dir.path(), path, "cannot open");
  dir.write("tokenizer.json", "{ not json");
  expect_input_error(dir.path(), path, "invalid JSON");
  json bad = sentencepiece_like();
  bad["normalizer"] = {{"type", "BertNormalizer"}};
  dir.write("tokenizer.json", bad.dump());
  expect_input_error(dir.path(), path, "BertNormalizer");
  bad = sentencepiece_like();
  bad["model"]["type"] = "Unigram";
  dir.write("tokenizer.json", bad.dump());
  expect_input_error(dir.path(), path, "Unigram");
  bad = sentencepiece_like();
  bad["model"]["merges"].push_back("x y");
  dir.write("tokenizer.json", bad.dump());
  expect_input_error(dir.path(), path, "merge 3 uses 'xy', which is not in the vocabulary");
  bad = sentencepiece_like();
  bad["model"]["vocab"] = "not an object";
  dir.write("tokenizer.json", bad.dump());
  expect_input_error(dir.path(), path, "");
  dir.write("tokenizer.json", sentencepiece_like().dump());
  dir.write("tokenizer_config.json", "[1, 2");
  expect_input_error(dir.path(), dir.path() + "/tokenizer_config.json", "invalid JSON");
}

// ---- GGUF vocabularies ----

/// Qwen3's tokenizer.json written as a GGUF "gpt2" vocabulary, as llama.cpp's converter lays it out.
void write_qwen3_gguf(const std::string& path) {
  const json tokenizer = json::parse(read_file(kQwen3Dir + "/tokenizer.json"));
  std::vector<std::string> tokens(151669);
  std::vector<std::int32_t> types(tokens.size(), 1);
  for (const auto& [piece, id] : tokenizer.at("model").at("vocab").items()) tokens[id.get<std::size_t>()] = piece;
  for (const json& added : tokenizer.at("added_tokens")) {
    const auto id = added.at("id").get<std::size_t>();
    tokens[id] = added.at("content").get<std::string>();
    types[id] = added.at("special").get<bool>() ? 3 : 4;
  }
  std::vector<std::string> merges;
  for (const json& m : tokenizer.at("model").at("merges"))
    merges.push_back(m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>());
  GgufWriter w;
  w.add_string("general.architecture", "qwen3");
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "qwen2");
  w.add_strings("tokenizer.ggml.tokens", tokens);
  w.add_i32s("tokenizer.ggml.token_type", types);
  w.add_strings("tokenizer.ggml.merges", merges);
  w.add_u32("tokenizer.ggml.bos_token_id", 151643);
  w.add_u32("tokenizer.ggml.eos_token_id", 151645);
  w.add_bool("tokenizer.ggml.add_bos_token", false);
  w.save(path);
}

TEST(GgufTokenizer, ByteLevelQwenVocabularyMatchesHuggingFaceIds) {
  ScratchDir dir;
  const std::string path = dir.path() + "/qwen3-vocab.gguf";
  write_qwen3_gguf(path);
  const GgufFile file(path);
  const auto t = load_gguf_tokenizer(file);
  EXPECT_EQ(t->kind(), "gguf-gpt2");
  EXPECT_EQ(t->vocab_size(), 151669);
  EXPECT_FALSE(t->adds_bos());
  EXPECT_EQ(t->eos(), 151645);
  std::ifstream in(kQwen3Dir + "/expected_ids.jsonl");
  int cases = 0;
  for (std::string line; std::getline(in, line); ++cases) {
    const json row = json::parse(line);
    const std::string text = row.at("text").get<std::string>();
    EXPECT_EQ(t->encode(text), row.at("ids").get<std::vector<int>>()) << text;
    EXPECT_EQ(t->decode(t->encode(text), true), text);
  }
  EXPECT_EQ(cases, 20);
  EXPECT_EQ(t->decode(t->encode("<|im_start|>user\nhi<|im_end|>")), "user\nhi");  // control tokens skipped
  EXPECT_EQ(t->decode(t->encode("<tool_call>")), "<tool_call>");                // user-defined kept
}

/// A small "llama" vocabulary whose scores disagree with the id order: the scores must win.
void write_scored_sentencepiece_gguf(const std::string& path, const std::string& model = "llama") {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<std::int32_t> types = {2, 3, 3};
  std::vector<float> scores = {0, 0, 0};
  for (int b = 0; b < 256; ++b) {
    tokens.push_back(bpe::byte_piece(static_cast<unsigned char>(b)));
    types.push_back(6);
    scores.push_back(0);
  }
  // "▁a" (262) has a lower id but a worse score than "ab" (263).
  for (const auto& [piece, score] : std::vector<std::pair<std::string, float>>{
           {"\xE2\x96\x81", -10}, {"a", -11}, {"b", -12}, {"\xE2\x96\x81" "a", -2}, {"ab", -1}}) {
    tokens.push_back(piece);
    types.push_back(1);
    scores.push_back(score);
  }
  GgufWriter w;
  w.add_string("tokenizer.ggml.model", model);
  w.add_strings("tokenizer.ggml.tokens", tokens);
  w.add_i32s("tokenizer.ggml.token_type", types);
  w.add_f32s("tokenizer.ggml.scores", scores);
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", 2);
  w.save(path);
}

TEST(GgufTokenizer, SentencePieceMergesByScoreWithByteFallback) {
  ScratchDir dir;
  write_scored_sentencepiece_gguf(dir.path() + "/sp.gguf");
  const GgufFile file(dir.path() + "/sp.gguf");
  const auto t = load_gguf_tokenizer(file);
  EXPECT_EQ(t->kind(), "gguf-llama");
  EXPECT_TRUE(t->adds_bos());  // llama's default
  EXPECT_EQ(t->encode("ab"), (std::vector<int>{259, 263}));
  EXPECT_EQ(t->encode("ab</s>"), (std::vector<int>{259, 263, 2}));
  EXPECT_EQ(t->encode("\xC3\xA9"), (std::vector<int>{259, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(t->decode(t->encode_with_bos("ab a\xC3\xA9")), "ab a\xC3\xA9");
  EXPECT_EQ(t->decode({1, 259, 263, 2}, true), "<s> ab</s>");
}

TEST(GgufTokenizer, UnsupportedVocabulariesAreInputErrors) {
  ScratchDir dir;
  const std::string path = dir.path() + "/bert.gguf";
  write_scored_sentencepiece_gguf(path, "bert");
  const GgufFile file(path);
  try {
    load_gguf_tokenizer(file);
    ADD_FAILURE() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(path + ": ", 0), 0u) << e.what();
    EXPECT_NE(std::string(e.what()).find("bert"), std::string::npos) << e.what();
  }
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  const std::string bare = dir.path() + "/bare.gguf";
  w.save(bare);
  EXPECT_THROW(load_gguf_tokenizer(GgufFile(bare)), InputError);
}

}  // namespace
}  // namespace oscar::model::test
