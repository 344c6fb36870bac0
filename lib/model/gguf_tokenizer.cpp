#include "model/gguf_tokenizer.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/error.h"
#include "model/bpe_tokenizer.h"

namespace oscar::model {
namespace {

/// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum TokenType : std::int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

struct GgufVocabulary {
  std::vector<std::string> tokens;
  std::vector<std::int64_t> types;
};

GgufVocabulary read_vocabulary(const GgufFile& file) {
  GgufVocabulary vocab;
  vocab.tokens = file.get_string_array("tokenizer.ggml.tokens");
  if (file.has("tokenizer.ggml.token_type")) {
    vocab.types = file.get_int_array("tokenizer.ggml.token_type");
    if (vocab.types.size() != vocab.tokens.size())
      throw InputError(file.path() + ": tokenizer.ggml.token_type has " + std::to_string(vocab.types.size()) +
                       " entries for " + std::to_string(vocab.tokens.size()) + " tokens");
  } else {
    vocab.types.assign(vocab.tokens.size(), kNormal);
  }
  return vocab;
}

/// Control and user-defined tokens are cut out of the text literally (llama.cpp's special-token partition);
/// control and unknown tokens are skipped by decode unless asked for.
void add_special_tokens(const GgufVocabulary& vocab, BpePipeline& pipeline) {
  for (std::size_t id = 0; id < vocab.tokens.size(); ++id) {
    const std::int64_t type = vocab.types[id];
    if (type == kControl || type == kUserDefined)
      pipeline.added_tokens.push_back({vocab.tokens[id], static_cast<int>(id), type == kControl, /*normalized=*/false});
    if (type == kUnknown) pipeline.special_ids.push_back(static_cast<int>(id));
  }
}

/// Pieces a word may be spelled with: everything but control, unknown and byte tokens, so that merging can
/// never assemble "<unk>" or "<0x0A>" out of ordinary characters.
void fill_symbols(const GgufVocabulary& vocab, bpe::BpeModel& model) {
  model.pieces = vocab.tokens;
  for (std::size_t id = 0; id < vocab.tokens.size(); ++id) {
    const std::int64_t type = vocab.types[id];
    if (type == kByte) {
      const int byte = bpe::parse_byte_piece(vocab.tokens[id]);
      if (byte >= 0) model.byte_tokens[static_cast<std::size_t>(byte)] = static_cast<int>(id);
    } else if (type != kControl && type != kUnknown) {
      model.symbols.emplace(vocab.tokens[id], static_cast<int>(id));
    }
  }
}

/// SentencePiece merges the adjacent pair whose concatenation has the best score. Some converters write one
/// placeholder score for every piece (TinyStories-656K's GGUF has -1000 throughout); the scores then say
/// nothing, and the BPE convention that pieces are numbered in the order their merges were learnt takes over:
/// the lower id merges first, which reproduces the ranked merges of the original tokenizer.json.
std::vector<double> merge_priorities(const GgufFile& file, std::size_t count) {
  std::vector<double> priority(count);
  const std::vector<float> scores =
      file.has("tokenizer.ggml.scores") ? file.get_float_array("tokenizer.ggml.scores") : std::vector<float>();
  if (!scores.empty() && scores.size() != count)
    throw InputError(file.path() + ": tokenizer.ggml.scores has " + std::to_string(scores.size()) + " entries for " +
                     std::to_string(count) + " tokens");
  const bool informative =
      !scores.empty() && std::any_of(scores.begin(), scores.end(), [&](float s) { return s != scores.front(); });
  for (std::size_t id = 0; id < count; ++id)
    priority[id] = informative ? -static_cast<double>(scores[id]) : static_cast<double>(id);
  return priority;
}

int checked_token(const GgufFile& file, const char* key, std::int64_t fallback, std::size_t count) {
  const std::int64_t id = file.get_int(key, fallback);
  if (id >= static_cast<std::int64_t>(count))
    throw InputError(file.path() + ": " + key + " " + std::to_string(id) + " is outside the vocabulary of " +
                     std::to_string(count));
  return id < 0 ? -1 : static_cast<int>(id);
}

/// SentencePiece ("llama"): spaces become "▁" with one in front of the text (and after every special token,
/// as llama.cpp does), best-score merges, byte fallback; decoding undoes the spaces and drops the prefix.
BpePipeline sentencepiece_pipeline(const GgufFile& file, const GgufVocabulary& vocab) {
  BpePipeline pipeline;
  pipeline.kind = "gguf-llama";
  add_special_tokens(vocab, pipeline);
  fill_symbols(vocab, pipeline.model);
  pipeline.model.merge_by_score = true;
  pipeline.model.piece_priority = merge_priorities(file, vocab.tokens.size());
  pipeline.model.byte_fallback = true;
  pipeline.model.unk = checked_token(file, "tokenizer.ggml.unknown_token_id", 0, vocab.tokens.size());
  pipeline.model.fuse_unk = true;
  const bool space_prefix = file.get_bool("tokenizer.ggml.add_space_prefix", true);
  if (space_prefix) pipeline.normalizers.push_back({BpePipeline::Normalizer::Kind::kPrepend, kMetaspace, "", nullptr});
  pipeline.normalizers.push_back({BpePipeline::Normalizer::Kind::kReplace, " ", kMetaspace, nullptr});
  using D = BpePipeline::Decoder;
  pipeline.decoders.push_back({D::Kind::kReplace, kMetaspace, " ", 0, 0, false});
  pipeline.decoders.push_back({D::Kind::kByteFallback, "", "", 0, 0, false});
  pipeline.decoders.push_back({D::Kind::kFuse, "", "", 0, 0, false});
  if (space_prefix) pipeline.decoders.push_back({D::Kind::kStrip, " ", "", 1, 0, false});
  pipeline.bos = checked_token(file, "tokenizer.ggml.bos_token_id", 1, vocab.tokens.size());
  pipeline.eos = checked_token(file, "tokenizer.ggml.eos_token_id", 2, vocab.tokens.size());
  pipeline.adds_bos = file.get_bool("tokenizer.ggml.add_bos_token", true) && pipeline.bos >= 0;
  return pipeline;
}

/// The pre-tokenizer regex tokenizer.ggml.pre names (llama.cpp's names), and whether the vocabulary takes a
/// word that is itself a piece whole (Llama-3's ignore_merges).
struct PreTokenizerChoice {
  const char* pattern;
  bool ignore_merges;
  bool nfc;  ///< Qwen's tokenizer.json normalises to NFC before splitting
};

PreTokenizerChoice choose_pre_tokenizer(const GgufFile& file) {
  const std::string pre = file.get_string("tokenizer.ggml.pre", "default");
  if (pre == "qwen2") return {kQwen2SplitPattern, false, true};
  if (pre == "llama-bpe" || pre == "llama3") return {kLlama3SplitPattern, true, false};
  if (pre == "default" || pre == "gpt-2" || pre == "gpt2") return {kGpt2SplitPattern, false, false};
  throw InputError(file.path() + ": unsupported tokenizer.ggml.pre '" + pre + "' (supported: qwen2, llama-bpe, default)");
}

void read_gguf_merges(const GgufFile& file, bpe::BpeModel& model) {
  const std::vector<std::string> merges = file.get_string_array("tokenizer.ggml.merges");
  model.pair_merges.reserve(merges.size());
  auto id_of = [&](const std::string& piece, std::size_t rank) {
    const auto it = model.symbols.find(piece);
    if (it == model.symbols.end())
      throw InputError(file.path() + ": tokenizer.ggml.merges[" + std::to_string(rank) + "] uses '" + piece +
                       "', which is not a token");
    return it->second;
  };
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const std::size_t space = merges[rank].find(' ', 1);  // a piece is never empty, so skip position 0
    if (space == std::string::npos)
      throw InputError(file.path() + ": tokenizer.ggml.merges[" + std::to_string(rank) + "] is not 'a b'");
    const std::string left = merges[rank].substr(0, space), right = merges[rank].substr(space + 1);
    const std::uint64_t key = bpe::BpeModel::pair_key(id_of(left, rank), id_of(right, rank));
    model.pair_merges.emplace(key, bpe::Merge{id_of(left + right, rank), static_cast<double>(rank)});
  }
}

/// Byte-level BPE ("gpt2"): Qwen, Llama-3, GPT-2 style vocabularies with ranked merges.
BpePipeline byte_level_pipeline(const GgufFile& file, const GgufVocabulary& vocab) {
  BpePipeline pipeline;
  pipeline.kind = "gguf-gpt2";
  const PreTokenizerChoice choice = choose_pre_tokenizer(file);
  add_special_tokens(vocab, pipeline);
  fill_symbols(vocab, pipeline.model);
  read_gguf_merges(file, pipeline.model);
  pipeline.model.ignore_merges = choice.ignore_merges;
  if (choice.nfc) pipeline.normalizers.push_back({BpePipeline::Normalizer::Kind::kNFC, "", "", nullptr});
  BpePipeline::PreTokenizer split{};
  split.kind = BpePipeline::PreTokenizer::Kind::kSplit;
  split.regex = std::make_shared<const text::Regex>(choice.pattern);
  pipeline.pre_tokenizers.push_back(split);
  BpePipeline::PreTokenizer byte_level{};
  byte_level.kind = BpePipeline::PreTokenizer::Kind::kByteLevel;
  pipeline.pre_tokenizers.push_back(byte_level);
  pipeline.decoders.push_back({BpePipeline::Decoder::Kind::kByteLevel, "", "", 0, 0, false});
  pipeline.bos = checked_token(file, "tokenizer.ggml.bos_token_id", -1, vocab.tokens.size());
  pipeline.eos = checked_token(file, "tokenizer.ggml.eos_token_id", -1, vocab.tokens.size());
  pipeline.adds_bos = file.get_bool("tokenizer.ggml.add_bos_token", false) && pipeline.bos >= 0;
  return pipeline;
}

}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& file) {
  if (!file.has("tokenizer.ggml.model")) throw InputError(file.path() + ": missing metadata tokenizer.ggml.model");
  const std::string model = file.get_string("tokenizer.ggml.model");
  if (model != "llama" && model != "gpt2")
    throw InputError(file.path() + ": unsupported tokenizer.ggml.model '" + model + "' (supported: llama, gpt2)");
  const GgufVocabulary vocab = read_vocabulary(file);
  return make_bpe_tokenizer(model == "llama" ? sentencepiece_pipeline(file, vocab) : byte_level_pipeline(file, vocab));
}

}  // namespace oscar::model
