// llama2.c's tokenizer (tokenizer.bin / tok512.bin): a SentencePiece-style vocabulary with merge scores,
// encoded exactly as llama2.c's run.c does so that ids match the model's training.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace oscar::model {

class Llama2cTokenizer {
 public:
  static constexpr int kBos = 1;
  static constexpr int kEos = 2;
  /// Byte-fallback tokens <0x00>..<0xFF> are ids 3..258 (SentencePiece's layout, which run.c assumes).
  static constexpr int kByteOffset = 3;

  /// Reads the file; `vocab_size` comes from the model header, since the file does not store it.
  /// Throws oscar::InputError("<path>: <problem>") when it is missing or truncated.
  Llama2cTokenizer(const std::string& path, int vocab_size);

  /// Text to ids: optional BOS, the dummy-prefix space, per-code-point lookup with byte fallback, then
  /// repeated merging of the adjacent pair whose concatenation has the best score. Optional EOS.
  std::vector<int> encode(const std::string& text, bool bos, bool eos) const;
  /// One token's text given the previous token: <0xNN> becomes the raw byte, and the leading space of the
  /// first piece after BOS is dropped (it is the dummy prefix).
  std::string decode(int prev_token, int token) const;
  /// A whole sequence; ids[0] counts as following nothing, so a leading BOS is simply skipped.
  std::string decode(const std::vector<int>& ids) const;

  int vocab_size() const { return static_cast<int>(pieces_.size()); }
  const std::string& piece(int id) const { return pieces_.at(static_cast<size_t>(id)); }

 private:
  int lookup(const std::string& piece) const;
  void merge_best_pairs(std::vector<int>& ids) const;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> ids_;
};

}  // namespace oscar::model
