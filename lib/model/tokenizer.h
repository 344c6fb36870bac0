// The tokenizer interface every model format's vocabulary implements (llama2.c scores, GGUF-embedded
// vocabularies, Hugging Face tokenizer.json). Plain C++.
#pragma once

#include <string>
#include <vector>

namespace oscar::model {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  /// Text to ids, without BOS/EOS. Special/added tokens written literally in `text` (e.g. "<|im_start|>")
  /// become their ids, as Hugging Face's encode does, so rendered chat templates tokenize correctly.
  virtual std::vector<int> encode(const std::string& text) const = 0;
  /// Ids to text; special tokens (BOS/EOS, control tokens) are skipped unless `keep_special`.
  virtual std::string decode(const std::vector<int>& ids, bool keep_special = false) const = 0;
  /// One token's raw piece as stored in the vocabulary (for display: "▁the", "Ġthe", "<0x0A>").
  virtual std::string piece(int id) const = 0;
  /// The id of an exact piece or special token, or -1.
  virtual int find(const std::string& piece) const = 0;

  virtual int vocab_size() const = 0;
  virtual int bos() const = 0;  ///< -1 when none
  virtual int eos() const = 0;  ///< -1 when none
  /// Whether the model expects BOS in front of raw text (llama2.c/SentencePiece: yes; Qwen: no).
  virtual bool adds_bos() const = 0;
  /// "llama2c", "gguf-llama", "gguf-gpt2", "hf-bpe": for `oscar-model info`.
  virtual std::string kind() const = 0;

  /// encode() with BOS in front when adds_bos() and the model has one.
  std::vector<int> encode_with_bos(const std::string& text) const {
    std::vector<int> ids;
    if (adds_bos() && bos() >= 0) ids.push_back(bos());
    const std::vector<int> body = encode(text);
    ids.insert(ids.end(), body.begin(), body.end());
    return ids;
  }
};

}  // namespace oscar::model
