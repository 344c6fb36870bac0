// llama2.c's tokenizer (tokenizer.bin / tok512.bin): a SentencePiece-style vocabulary with merge scores,
// encoded exactly as llama2.c's run.c does so that ids match the model's training.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/tokenizer.h"

namespace oscar::model {

class Llama2cTokenizer : public Tokenizer {
 public:
  static constexpr int kBos = 1;
  static constexpr int kEos = 2;
  /// Byte-fallback tokens <0x00>..<0xFF> are ids 3..258 (SentencePiece's layout, which run.c assumes).
  static constexpr int kByteOffset = 3;

  /// Reads the file; `vocab_size` comes from the model header, since the file does not store it.
  /// Throws oscar::InputError("<path>: <problem>") when it is missing or truncated.
  Llama2cTokenizer(const std::string& path, int vocab_size);

  /// Text to ids: optional BOS, the dummy-prefix space, per-code-point lookup with byte fallback, then
  /// repeated merging of the adjacent pair whose concatenation has the best score (leftmost on ties), as
  /// run.c does, but in O(n log n) rather than run.c's rescan per merge. Optional EOS.
  std::vector<int> encode(const std::string& text, bool bos, bool eos) const;
  /// Tokenizer::encode: encode(text, false, false), dummy prefix included. The vocabulary has no special
  /// tokens to recognise in the text (run.c has none either).
  std::vector<int> encode(const std::string& text) const override;
  /// One token's text given the previous token: <0xNN> becomes the raw byte, and the leading space of the
  /// first piece after BOS is dropped (it is the dummy prefix).
  std::string decode(int prev_token, int token) const;
  /// A whole sequence. BOS/EOS are skipped unless `keep_special`; the first token counts as following BOS,
  /// so that the dummy prefix goes whether or not the sequence starts with BOS.
  std::string decode(const std::vector<int>& ids, bool keep_special = false) const override;

  std::string piece(int id) const override { return pieces_.at(static_cast<size_t>(id)); }
  int find(const std::string& piece) const override { return lookup(piece); }
  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  int bos() const override { return kBos; }
  int eos() const override { return kEos; }
  bool adds_bos() const override { return true; }
  std::string kind() const override { return "llama2c"; }

 private:
  int lookup(const std::string& piece) const;
  void merge_best_pairs(std::vector<int>& ids) const;

  std::vector<std::string> pieces_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int> ids_;
};

}  // namespace oscar::model
