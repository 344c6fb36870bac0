// The tokenizer pipeline that both tokenizer.json and GGUF vocabularies are loaded into, modelled on Hugging
// Face's: special tokens cut out literally, normalisers, pre-tokenizers (regex split, byte-level, metaspace),
// BPE per word, and a decoder chain. Loaders fill a BpePipeline; make_bpe_tokenizer turns it into a Tokenizer.
// Plain C++; internal to lib/model.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/bpe.h"
#include "model/text_split.h"
#include "model/tokenizer.h"

namespace oscar::model {

/// Pre-tokenizer regexes of the common byte-level vocabularies.
inline constexpr const char* kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr const char* kQwen2SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr const char* kLlama3SplitPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
/// SentencePiece's visible space, U+2581.
inline constexpr const char* kMetaspace = "\xE2\x96\x81";

struct BpePipeline {
  struct Normalizer {
    enum class Kind { kNFC, kNFD, kNFKC, kNFKD, kLowercase, kPrepend, kReplace };
    Kind kind;
    std::string text;         ///< kPrepend: what to put in front; kReplace: the literal to replace
    std::string replacement;  ///< kReplace
    std::shared_ptr<const text::Regex> regex;  ///< kReplace with a regex pattern (else `text` is literal)
  };
  struct PreTokenizer {
    enum class Kind { kSplit, kByteLevel, kMetaspace };
    enum class Prepend { kAlways, kFirst, kNever };
    Kind kind;
    std::shared_ptr<const text::Regex> regex;  ///< kSplit: pieces are the matches and the gaps ("Isolated")
    bool add_prefix_space = false;             ///< kByteLevel
    bool use_regex = false;                    ///< kByteLevel: split with GPT-2's pattern first
    std::string replacement = kMetaspace;      ///< kMetaspace
    Prepend prepend = Prepend::kAlways;        ///< kMetaspace
    bool split = true;                         ///< kMetaspace: each replacement starts a new word
  };
  /// Decoder steps run over the list of token strings, in order, as Hugging Face's decoder chain does.
  struct Decoder {
    enum class Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
    Kind kind;
    std::string text;         ///< kReplace: the literal; kStrip: the character; kMetaspace: the replacement
    std::string replacement;  ///< kReplace
    int strip_start = 0, strip_stop = 0;  ///< kStrip: how many leading/trailing `text` characters to drop
    bool strip_first_space = true;        ///< kMetaspace: the first token's leading space is the prefix
  };
  struct AddedToken {
    std::string content;
    int id = -1;
    bool special = true;      ///< skipped by decode unless keep_special
    bool normalized = false;  ///< matched in the normalised text instead of the raw text
  };

  std::vector<Normalizer> normalizers;
  std::vector<PreTokenizer> pre_tokenizers;
  std::vector<Decoder> decoders;
  std::vector<AddedToken> added_tokens;
  /// Also ids not otherwise reachable by text (control tokens) that decode should skip.
  std::vector<int> special_ids;
  bpe::BpeModel model;  ///< model.pieces is the whole vocabulary, added tokens included
  int bos = -1, eos = -1;
  bool adds_bos = false;
  std::string kind;
};

/// Decoding returns raw bytes (a sequence cut inside a multi-byte character ends with an incomplete one, never
/// U+FFFD) and skips ids past the vocabulary (padded embedding rows), as Hugging Face's decode does. Words of
/// up to 128 bytes are cached (thread-safe), which makes byte-level encoding of ordinary text cheap.
std::unique_ptr<Tokenizer> make_bpe_tokenizer(BpePipeline pipeline);

}  // namespace oscar::model
