// TinyStories-656K ships the same SentencePiece-style vocabulary twice: as tokenizer.json (ranked merges,
// "▁" normaliser) and embedded in its GGUF (pieces with placeholder scores). Both loaders must agree.
#include <chrono>

#include "model/chat_template.h"
#include "model/gguf_file.h"
#include "model/gguf_tokenizer.h"
#include "tokenizer_test_support.h"

namespace oscar::model::test {
namespace {

const Tokenizer& hf656k() {
  static const std::unique_ptr<Tokenizer> t = load_hf_tokenizer(kTinyStoriesDir);
  return *t;
}

const Tokenizer& gguf656k() {
  static const GgufFile file(kTinyStoriesGguf);
  static const std::unique_ptr<Tokenizer> t = load_gguf_tokenizer(file);
  return *t;
}

/// Sentences of every shape the vocabulary can spell, plus the sample file's story paragraphs.
std::vector<std::string> sentences() {
  std::vector<std::string> s = {
      "Once upon a time, there was a little girl named Lily.",
      "She loved to play outside in the park.",
      "\"Can we go to the park?\" asked Tom. Mom said, \"Yes!\"",
      "The cat sat on the mat.",
      "  Two leading spaces.",
      "Trailing spaces   ",
      "Many     spaces     between words.",
      "Line one.\nLine two.\n\nLine four.",
      "Numbers: 1, 22, 333 and 4444.",
      "It's a dog's life, isn't it?",
      "CAPITAL LETTERS AND lower letters",
      "The end.",
      "a",
      " ",
      "\n",
      "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
      "Lily and Ben were best friends. They liked to play with their toys together.",
  };
  // The sample's stories, split at its <|endoftext|> separators (not a token of this vocabulary).
  const std::string sample = read_file(kSampleText);
  const std::string separator = "<|endoftext|>";
  std::size_t start = 0;
  for (std::size_t hit = sample.find(separator); hit != std::string::npos; hit = sample.find(separator, start)) {
    s.push_back(sample.substr(start, hit - start));
    start = hit + separator.size();
  }
  s.push_back(sample.substr(start));
  return s;
}

TEST(TinyStoriesTokenizers, HuggingFaceAndGgufGiveIdenticalIds) {
  const std::vector<std::string> texts = sentences();
  ASSERT_GE(texts.size(), 20u);
  for (const std::string& s : texts) {
    const std::vector<int> hf = hf656k().encode(s);
    EXPECT_EQ(gguf656k().encode(s), hf) << "text: " << s;
    EXPECT_EQ(gguf656k().encode_with_bos(s), hf656k().encode_with_bos(s));
  }
}

TEST(TinyStoriesTokenizers, AgreeOnAHundredKilobytesOfStories) {
  const std::string text = read_file(kValText).substr(0, 100 * 1024);
  EXPECT_EQ(gguf656k().encode(text), hf656k().encode(text));
}

TEST(TinyStoriesTokenizers, Properties) {
  for (const Tokenizer* t : {&hf656k(), &gguf656k()}) {
    EXPECT_EQ(t->vocab_size(), 2048);
    EXPECT_EQ(t->bos(), 1);
    EXPECT_EQ(t->eos(), 2);
    EXPECT_TRUE(t->adds_bos());
    EXPECT_EQ(t->find("<|start_story|>"), 1);
    EXPECT_EQ(t->piece(1), "<|start_story|>");
    EXPECT_EQ(detect_chat_template(*t), ChatTemplate::kNone);
  }
  EXPECT_EQ(hf656k().kind(), "hf-bpe");
  EXPECT_EQ(gguf656k().kind(), "gguf-llama");
}

TEST(TinyStoriesTokenizers, SpacesBecomeMetaspaceWithADummyPrefix) {
  for (const Tokenizer* t : {&hf656k(), &gguf656k()}) {
    std::string spelled;
    for (int id : t->encode("Once upon a time")) spelled += t->piece(id);
    EXPECT_EQ(spelled, "\xE2\x96\x81Once\xE2\x96\x81upon\xE2\x96\x81" "a\xE2\x96\x81time");
    EXPECT_EQ(t->encode_with_bos("Once").front(), 1);
  }
}

bool is_ascii(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

TEST(TinyStoriesTokenizers, RoundTripDropsTheDummyPrefix) {
  for (const std::string& s : sentences()) {
    if (!is_ascii(s)) continue;  // curly quotes and the like have no pieces here: they become <unk>
    EXPECT_EQ(hf656k().decode(hf656k().encode(s)), s);
    EXPECT_EQ(gguf656k().decode(gguf656k().encode_with_bos(s)), s);
  }
}

TEST(TinyStoriesTokenizers, CharactersOutsideTheVocabularyBecomeOneUnknown) {
  // The vocabulary has no byte pieces, so "é" and "€" fall back to <unk> (fused when adjacent).
  const std::vector<int> hf = hf656k().encode("caf\xC3\xA9\xE2\x82\xAC ok");
  EXPECT_EQ(std::count(hf.begin(), hf.end(), 0), 1);
  EXPECT_EQ(gguf656k().encode("caf\xC3\xA9\xE2\x82\xAC ok"), hf);
}

TEST(TinyStoriesTokenizers, ControlTokensInTextAreRecognised) {
  const std::vector<int> ids = gguf656k().encode("Hi<|end_story|>");
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(gguf656k().decode(ids), "Hi");
  EXPECT_EQ(hf656k().encode("Hi<|end_story|>").back(), 2);
}

TEST(TinyStoriesTokenizers, EncodesLongTextQuickly) {
  // Without a pre-tokenizer the whole text is one word: the merge loop must not be quadratic.
  const std::string text = read_file(kValText);
  hf656k();
  gguf656k();
  for (const Tokenizer* t : {&hf656k(), &gguf656k()}) {
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int> ids = t->encode(text);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s: %zu bytes -> %zu tokens in %.3f s\n", t->kind().c_str(), text.size(), ids.size(), seconds);
    EXPECT_LT(seconds, 2.0);
  }
}

}  // namespace
}  // namespace oscar::model::test
