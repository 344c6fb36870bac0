// Byte-pair encoding shared by every tokenizer: the merge loop (O(n log n) over a linked list of symbols and a
// heap of candidate pairs), one word's encoding with byte fallback / unknown-token handling, GPT-2's
// byte-to-unicode alphabet and SentencePiece's <0xNN> byte pieces. Plain C++; internal to lib/model.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

namespace oscar::model::bpe {

/// Two adjacent symbols merge into `merged`; among all adjacent pairs the lowest `priority` merges first.
struct Merge {
  int merged = -1;
  double priority = 0;
};

/// Repeatedly merges the adjacent pair with the lowest priority (the leftmost one on ties) until no adjacent
/// pair merges: the rule of both llama2.c's run.c (priority = -score) and Hugging Face's BPE (priority = merge
/// rank). `find_merge(int left, int right, Merge& merge) -> bool` says whether and how a pair merges.
/// A per-symbol version counter lets stale heap entries (a neighbour changed since they were pushed) be
/// skipped, so each merge costs O(log n) instead of run.c's full rescan.
template <class FindMerge>
void merge_adjacent(std::vector<int>& ids, FindMerge find_merge) {
  const int n = static_cast<int>(ids.size());
  if (n < 2) return;
  struct Candidate {
    double priority;
    int left, right;
    unsigned left_version, right_version;
    int merged;
  };
  auto worse = [](const Candidate& a, const Candidate& b) {
    return a.priority > b.priority || (a.priority == b.priority && a.left > b.left);
  };
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(worse)> heap(worse);
  std::vector<int> prev(static_cast<std::size_t>(n)), next(static_cast<std::size_t>(n));
  std::vector<unsigned> version(static_cast<std::size_t>(n), 0);
  std::vector<bool> alive(static_cast<std::size_t>(n), true);
  for (int i = 0; i < n; ++i) {
    prev[static_cast<std::size_t>(i)] = i - 1;
    next[static_cast<std::size_t>(i)] = i + 1 < n ? i + 1 : -1;
  }
  auto offer = [&](int left, int right) {
    Merge merge;
    if (!find_merge(ids[static_cast<std::size_t>(left)], ids[static_cast<std::size_t>(right)], merge)) return;
    heap.push({merge.priority, left, right, version[static_cast<std::size_t>(left)],
               version[static_cast<std::size_t>(right)], merge.merged});
  };
  for (int i = 0; i + 1 < n; ++i) offer(i, i + 1);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const auto l = static_cast<std::size_t>(c.left), r = static_cast<std::size_t>(c.right);
    if (!alive[l] || !alive[r] || next[l] != c.right || version[l] != c.left_version ||
        version[r] != c.right_version)
      continue;  // stale: one side has merged since
    ids[l] = c.merged;
    ++version[l];
    alive[r] = false;
    next[l] = next[r];
    if (next[r] >= 0) prev[static_cast<std::size_t>(next[r])] = c.left;
    if (prev[l] >= 0) offer(prev[l], c.left);
    if (next[l] >= 0) offer(c.left, next[l]);
  }
  std::vector<int> merged;
  for (int i = 0; i >= 0; i = next[static_cast<std::size_t>(i)]) merged.push_back(ids[static_cast<std::size_t>(i)]);
  ids.swap(merged);
}

/// One pre-tokenized word to ids. Words are spelled with `symbols` character by character; characters missing
/// from it fall back to byte pieces, then to the unknown token. Merges follow either Hugging Face's ranked
/// pair list (`pair_merges`) or, when `merge_by_score`, SentencePiece's rule: any adjacent pair whose
/// concatenation is a piece, the best-scoring first (`piece_priority`, lower first).
struct BpeModel {
  std::vector<std::string> pieces;                    ///< id -> piece
  std::unordered_map<std::string, int> symbols;       ///< pieces words may contain (not special tokens)
  std::unordered_map<std::uint64_t, Merge> pair_merges;  ///< key: pair_key(left, right)
  bool merge_by_score = false;
  std::vector<double> piece_priority;                 ///< merge_by_score: per merged piece
  std::array<int, 256> byte_tokens = filled(-1);      ///< <0xNN> pieces; -1 when absent
  bool byte_fallback = false;
  int unk = -1;          ///< -1: characters without a piece are dropped
  bool fuse_unk = false;  ///< consecutive unknown characters become one unknown token
  bool ignore_merges = false;  ///< a word that is itself a piece is taken whole (Llama-3)

  static std::uint64_t pair_key(int left, int right) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(left)) << 32) | static_cast<std::uint32_t>(right);
  }
  /// Appends the word's ids to `ids`.
  void encode_word(const std::string& word, std::vector<int>& ids) const;

 private:
  static std::array<int, 256> filled(int value) {
    std::array<int, 256> a{};
    a.fill(value);
    return a;
  }
  void spell(const std::string& word, std::vector<int>& ids) const;
};

/// GPT-2's byte-to-unicode alphabet: printable bytes stand for themselves, the others for U+0100 onwards, so
/// every byte string becomes printable text ("Ġ" is the space). Entry b is byte b's character in UTF-8.
const std::array<std::string, 256>& byte_level_alphabet();
std::string bytes_to_byte_level(const std::string& bytes);
/// The bytes behind byte-level text; false (and `bytes` unspecified) when a character is outside the alphabet.
bool byte_level_to_bytes(const std::string& text, std::string& bytes);

/// SentencePiece byte pieces: "<0x0A>" <-> 10. parse gives -1 for anything else.
int parse_byte_piece(const std::string& piece);
std::string byte_piece(unsigned char byte);

}  // namespace oscar::model::bpe
