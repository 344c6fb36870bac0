#include "model/bpe.h"

#include <cmath>
#include <cstdio>

#include "model/text_split.h"

namespace oscar::model::bpe {

void BpeModel::spell(const std::string& word, std::vector<int>& ids) const {
  bool previous_unknown = false;
  text::for_each_utf8_char(word, [&](const char* begin, std::size_t length) {
    const auto it = symbols.find(std::string(begin, length));
    if (it != symbols.end()) {
      ids.push_back(it->second);
      previous_unknown = false;
      return;
    }
    if (byte_fallback) {
      bool all_bytes = true;
      for (std::size_t i = 0; i < length; ++i) all_bytes = all_bytes && byte_tokens[static_cast<unsigned char>(begin[i])] >= 0;
      if (all_bytes) {
        for (std::size_t i = 0; i < length; ++i) ids.push_back(byte_tokens[static_cast<unsigned char>(begin[i])]);
        previous_unknown = false;
        return;
      }
    }
    if (unk >= 0 && !(fuse_unk && previous_unknown)) ids.push_back(unk);
    previous_unknown = unk >= 0;
  });
}

void BpeModel::encode_word(const std::string& word, std::vector<int>& ids) const {
  if (ignore_merges) {
    const auto it = symbols.find(word);
    if (it != symbols.end()) {
      ids.push_back(it->second);
      return;
    }
  }
  std::vector<int> word_ids;
  spell(word, word_ids);
  if (merge_by_score) {
    std::string joined;  // reused buffer: the lookup runs once per candidate pair
    merge_adjacent(word_ids, [&](int left, int right, Merge& merge) {
      joined.assign(pieces[static_cast<std::size_t>(left)]).append(pieces[static_cast<std::size_t>(right)]);
      const auto it = symbols.find(joined);
      if (it == symbols.end()) return false;
      const double priority = piece_priority[static_cast<std::size_t>(it->second)];
      if (std::isnan(priority)) return false;
      merge = {it->second, priority};
      return true;
    });
  } else {
    merge_adjacent(word_ids, [&](int left, int right, Merge& merge) {
      const auto it = pair_merges.find(pair_key(left, right));
      if (it == pair_merges.end()) return false;
      merge = it->second;
      return true;
    });
  }
  ids.insert(ids.end(), word_ids.begin(), word_ids.end());
}

namespace {

std::string utf8_encode(unsigned code_point) {
  std::string out;
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else {  // the alphabet stays below U+0800: two bytes
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
  return out;
}

bool printable_byte(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

/// Code point of each alphabet character (index) -> byte, -1 outside the alphabet. Code points < 0x144.
const std::array<int, 0x144>& alphabet_bytes() {
  static const std::array<int, 0x144> table = [] {
    std::array<int, 0x144> t{};
    t.fill(-1);
    unsigned next_extra = 0x100;
    for (int b = 0; b < 256; ++b) t[printable_byte(b) ? static_cast<std::size_t>(b) : next_extra++] = b;
    return t;
  }();
  return table;
}

}  // namespace

const std::array<std::string, 256>& byte_level_alphabet() {
  static const std::array<std::string, 256> alphabet = [] {
    std::array<std::string, 256> a;
    unsigned next_extra = 0x100;  // non-printable bytes take U+0100.. in byte order
    for (int b = 0; b < 256; ++b)
      a[static_cast<std::size_t>(b)] = utf8_encode(printable_byte(b) ? static_cast<unsigned>(b) : next_extra++);
    return a;
  }();
  return alphabet;
}

std::string bytes_to_byte_level(const std::string& bytes) {
  const auto& alphabet = byte_level_alphabet();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += alphabet[b];
  return out;
}

bool byte_level_to_bytes(const std::string& text, std::string& bytes) {
  const auto& table = alphabet_bytes();
  bytes.clear();
  for (std::size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    unsigned code_point = 0;
    if (lead < 0x80) {
      code_point = lead;
      i += 1;
    } else if ((lead & 0xE0) == 0xC0 && i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80) {
      code_point = ((lead & 0x1Fu) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3Fu);
      i += 2;
    } else {
      return false;
    }
    if (code_point >= table.size() || table[code_point] < 0) return false;
    bytes += static_cast<char>(table[code_point]);
  }
  return true;
}

int parse_byte_piece(const std::string& piece) {
  if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int high = hex(piece[3]), low = hex(piece[4]);
  return high < 0 || low < 0 ? -1 : high * 16 + low;
}

std::string byte_piece(unsigned char byte) {
  char buffer[8];
  std::snprintf(buffer, sizeof buffer, "<0x%02X>", byte);
  return buffer;
}

}  // namespace oscar::model::bpe
