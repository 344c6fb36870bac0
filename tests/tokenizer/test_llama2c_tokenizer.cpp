// llama2.c's tokenizer: the fast merge loop against a literal transcription of run.c's quadratic one, the
// Tokenizer interface, and speed on a long document.
#include <chrono>
#include <unordered_map>

#include "model/chat_template.h"
#include "model/llama2c_tokenizer.h"
#include "tokenizer_test_support.h"

namespace oscar::model::test {
namespace {

/// run.c's encode(), transcribed with its own reading of tok512.bin (independent of Llama2cTokenizer):
/// dummy prefix, code points with byte fallback, then one full rescan per merge.
class RunCReference {
 public:
  explicit RunCReference(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::int32_t max_len = 0;
    in.read(reinterpret_cast<char*>(&max_len), 4);
    for (int i = 0; i < 512; ++i) {
      float score = 0;
      std::int32_t len = 0;
      in.read(reinterpret_cast<char*>(&score), 4);
      in.read(reinterpret_cast<char*>(&len), 4);
      std::string piece(static_cast<std::size_t>(len), '\0');
      in.read(piece.data(), len);
      ids_.emplace(piece, i);  // first id wins, like Llama2cTokenizer (tok512 has no duplicates anyway)
      vocab_.push_back(piece);
      scores_.push_back(score);
    }
  }

  std::vector<int> encode(const std::string& text) const {
    std::vector<int> tokens;
    if (!text.empty()) tokens.push_back(lookup(" "));
    std::string buffer;
    for (std::size_t i = 0; i < text.size(); ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      if ((c & 0xC0) != 0x80) buffer.clear();
      buffer += static_cast<char>(c);
      if (i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80 && buffer.size() < 4) continue;
      const int id = lookup(buffer);
      if (id != -1) {
        tokens.push_back(id);
      } else {
        for (unsigned char b : buffer) tokens.push_back(b + 3);
      }
      buffer.clear();
    }
    for (;;) {
      float best_score = -1e10f;
      int best_id = -1, best_idx = -1;
      for (std::size_t i = 0; i + 1 < tokens.size(); ++i) {
        const int id = lookup(vocab_[static_cast<std::size_t>(tokens[i])] + vocab_[static_cast<std::size_t>(tokens[i + 1])]);
        if (id != -1 && scores_[static_cast<std::size_t>(id)] > best_score) {
          best_score = scores_[static_cast<std::size_t>(id)];
          best_id = id;
          best_idx = static_cast<int>(i);
        }
      }
      if (best_idx == -1) break;
      tokens[static_cast<std::size_t>(best_idx)] = best_id;
      tokens.erase(tokens.begin() + best_idx + 1);
    }
    return tokens;
  }

 private:
  int lookup(const std::string& s) const {
    const auto it = ids_.find(s);
    return it == ids_.end() ? -1 : it->second;
  }
  std::unordered_map<std::string, int> ids_;
  std::vector<std::string> vocab_;
  std::vector<float> scores_;
};

const Llama2cTokenizer& tok512() {
  static const Llama2cTokenizer t(kTok512, 512);
  return t;
}

TEST(Llama2cTokenizer, FastMergeEqualsRunCsQuadraticLoop) {
  const RunCReference reference(kTok512);
  const std::string stories = read_file(kValText);
  const std::vector<std::string> texts = {
      stories.substr(0, 3000),
      stories.substr(50000, 2000),
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbb   the the the",
      "zooo zppp ylll zooooo",  // "oo", "pp", "ll" are pieces: ties between equal pairs must go left
      "UTF-8: caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x99\x82, tabs\tand\nnewlines\n\n",
      "x",
  };
  for (const std::string& s : texts) EXPECT_EQ(tok512().encode(s, false, false), reference.encode(s)) << s.substr(0, 80);
}

TEST(Llama2cTokenizer, ImplementsTheTokenizerInterface) {
  const Tokenizer& t = tok512();
  EXPECT_EQ(t.kind(), "llama2c");
  EXPECT_EQ(t.vocab_size(), 512);
  EXPECT_EQ(t.bos(), 1);
  EXPECT_EQ(t.eos(), 2);
  EXPECT_TRUE(t.adds_bos());
  EXPECT_EQ(t.encode("Once upon a time"), tok512().encode("Once upon a time", false, false));
  EXPECT_EQ(t.encode_with_bos("Once upon a time"), tok512().encode("Once upon a time", true, false));
  EXPECT_EQ(t.piece(3), "<0x00>");
  EXPECT_EQ(t.find("<0x00>"), 3);
  EXPECT_EQ(t.find("definitely not a piece"), -1);
  EXPECT_EQ(detect_chat_template(t), ChatTemplate::kNone);
}

TEST(Llama2cTokenizer, RoundTripsDroppingTheDummyPrefix) {
  const std::vector<std::string> texts = {
      "Once upon a time, there was a dog.",
      "  two leading spaces and   three inside   ",
      "line one\nline two\n\n",
      "caf\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x99\x82",  // byte fallback
  };
  for (const std::string& s : texts) {
    EXPECT_EQ(tok512().decode(tok512().encode(s)), s);                    // without BOS
    EXPECT_EQ(tok512().decode(tok512().encode(s, true, true)), s);        // with BOS and EOS skipped
    EXPECT_EQ(tok512().decode(tok512().encode_with_bos(s), false), s);
  }
}

TEST(Llama2cTokenizer, KeepSpecialShowsBosAndEos) {
  const std::vector<int> ids = tok512().encode("Hi", true, true);
  const std::string kept = tok512().decode(ids, true);
  EXPECT_EQ(kept, tok512().piece(1) + "Hi" + tok512().piece(2));
}

TEST(Llama2cTokenizer, Encodes800KBWellUnderASecond) {
  const std::string text = read_file(kValText);
  ASSERT_GT(text.size(), 700000u);
  const auto start = std::chrono::steady_clock::now();
  const std::vector<int> ids = tok512().encode(text, true, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("llama2c: %zu bytes -> %zu tokens in %.3f s\n", text.size(), ids.size(), seconds);
  EXPECT_LT(seconds, 1.0);
  EXPECT_EQ(tok512().decode(ids), text);
}

}  // namespace
}  // namespace oscar::model::test
