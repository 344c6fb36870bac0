#include "model/llama2c_tokenizer.h"

#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "model/bpe.h"

namespace oscar::model {

Llama2cTokenizer::Llama2cTokenizer(const std::string& path, int vocab_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open");
  int32_t max_token_length = 0;  // only a buffer size hint for run.c; not needed here
  in.read(reinterpret_cast<char*>(&max_token_length), 4);
  pieces_.reserve(static_cast<size_t>(vocab_size));
  scores_.reserve(static_cast<size_t>(vocab_size));
  for (int i = 0; i < vocab_size; ++i) {
    float score = 0;
    int32_t len = 0;
    in.read(reinterpret_cast<char*>(&score), 4);
    in.read(reinterpret_cast<char*>(&len), 4);
    if (!in || len < 0 || len > (1 << 16))
      throw InputError(path + ": truncated or malformed at token " + std::to_string(i));
    std::string piece(static_cast<size_t>(len), '\0');
    in.read(piece.data(), len);
    if (!in) throw InputError(path + ": truncated at token " + std::to_string(i));
    // First id wins on duplicates, like run.c's binary search over a stable sort would mostly do.
    ids_.emplace(piece, i);
    pieces_.push_back(std::move(piece));
    scores_.push_back(score);
  }
}

int Llama2cTokenizer::lookup(const std::string& piece) const {
  const auto it = ids_.find(piece);
  return it == ids_.end() ? -1 : it->second;
}

std::vector<int> Llama2cTokenizer::encode(const std::string& text, bool bos, bool eos) const {
  std::vector<int> ids;
  if (bos) ids.push_back(kBos);
  // SentencePiece's add_dummy_prefix: words are stored with their leading space, so the first word needs one.
  if (!text.empty()) ids.push_back(lookup(" "));
  for (size_t i = 0; i < text.size();) {
    // One UTF-8 code point: a lead byte and its continuation bytes (at most 4 bytes, as run.c).
    size_t n = 1;
    while (i + n < text.size() && n < 4 && (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80) ++n;
    const std::string cp = text.substr(i, n);
    const int id = lookup(cp);
    if (id >= 0) {
      ids.push_back(id);
    } else {
      for (unsigned char byte : cp) ids.push_back(byte + kByteOffset);  // byte fallback
    }
    i += n;
  }
  merge_best_pairs(ids);
  if (eos) ids.push_back(kEos);
  return ids;
}

std::vector<int> Llama2cTokenizer::encode(const std::string& text) const { return encode(text, false, false); }

/// run.c's merge loop: each round merges the single best-scoring adjacent pair (leftmost on ties), until no
/// adjacent pair concatenates to a vocabulary piece. run.c rescans every pair per merge (quadratic: minutes
/// for a long document); bpe::merge_adjacent keeps the candidate pairs in a heap instead.
void Llama2cTokenizer::merge_best_pairs(std::vector<int>& ids) const {
  std::string joined;  // reused buffer: one lookup per candidate pair
  bpe::merge_adjacent(ids, [&](int left, int right, bpe::Merge& merge) {
    if (left < 0 || right < 0) return false;  // a character that had no piece (no " " in the vocabulary)
    joined.assign(pieces_[static_cast<size_t>(left)]).append(pieces_[static_cast<size_t>(right)]);
    const int id = lookup(joined);
    // run.c only takes a score above its -1e10 starting best.
    if (id < 0 || !(scores_[static_cast<size_t>(id)] > -1e10f)) return false;
    merge = {id, -static_cast<double>(scores_[static_cast<size_t>(id)])};
    return true;
  });
}

std::string Llama2cTokenizer::decode(int prev_token, int token) const {
  const std::string& p = piece(token);
  // After BOS the piece's leading space is SentencePiece's dummy prefix, not text.
  std::string out = (prev_token == kBos && !p.empty() && p[0] == ' ') ? p.substr(1) : p;
  unsigned int byte = 0;
  char tail = 0;
  if (out.size() == 6 && std::sscanf(out.c_str(), "<0x%02X>%c", &byte, &tail) == 1) return std::string(1, static_cast<char>(byte));
  return out;
}

std::string Llama2cTokenizer::decode(const std::vector<int>& ids, bool keep_special) const {
  std::string text;
  int prev = kBos;
  for (int id : ids) {
    if (id == kBos || id == kEos) {
      if (keep_special) text += piece(id);
    } else {
      text += decode(prev, id);
    }
    prev = id;
  }
  return text;
}

}  // namespace oscar::model
