#include "model/hf_tokenizer.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/bpe_tokenizer.h"

namespace oscar::model {
namespace {

using nlohmann::json;
using Normalizer = BpePipeline::Normalizer;
using PreTokenizer = BpePipeline::PreTokenizer;
using Decoder = BpePipeline::Decoder;

/// Largest id accepted from a vocabulary file; guards the id -> piece table against absurd sizes.
constexpr std::int64_t kMaxTokenId = 1 << 24;

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw InputError(path + ": cannot open");
  try {
    return json::parse(in);
  } catch (const json::exception& e) {
    throw InputError(path + ": invalid JSON: " + e.what());
  }
}

std::string type_of(const json& node) { return node.value("type", std::string()); }

/// A component's {"String": s} or {"Regex": r} pattern; the regex is compiled, the string kept literal.
struct Pattern {
  std::string literal;
  std::shared_ptr<const text::Regex> regex;
};
Pattern read_pattern(const json& node) {
  const json& pattern = node.at("pattern");
  if (pattern.contains("Regex")) return {"", std::make_shared<const text::Regex>(pattern.at("Regex").get<std::string>())};
  return {pattern.at("String").get<std::string>(), nullptr};
}

void add_normalizer(const json& node, std::vector<Normalizer>& out) {
  if (node.is_null()) return;
  const std::string type = type_of(node);
  if (type == "Sequence") {
    for (const json& child : node.at("normalizers")) add_normalizer(child, out);
  } else if (type == "NFC") {
    out.push_back({Normalizer::Kind::kNFC, "", "", nullptr});
  } else if (type == "NFD") {
    out.push_back({Normalizer::Kind::kNFD, "", "", nullptr});
  } else if (type == "NFKC") {
    out.push_back({Normalizer::Kind::kNFKC, "", "", nullptr});
  } else if (type == "NFKD") {
    out.push_back({Normalizer::Kind::kNFKD, "", "", nullptr});
  } else if (type == "Lowercase") {
    out.push_back({Normalizer::Kind::kLowercase, "", "", nullptr});
  } else if (type == "Prepend") {
    out.push_back({Normalizer::Kind::kPrepend, node.at("prepend").get<std::string>(), "", nullptr});
  } else if (type == "Replace") {
    Pattern pattern = read_pattern(node);
    out.push_back({Normalizer::Kind::kReplace, pattern.literal, node.at("content").get<std::string>(), pattern.regex});
  } else {
    throw std::invalid_argument("unsupported normalizer " + type);
  }
}

/// Metaspace's prepend rule: the newer "prepend_scheme", or the older add_prefix_space flag.
PreTokenizer::Prepend read_prepend_scheme(const json& node) {
  if (node.contains("prepend_scheme")) {
    const std::string scheme = node.at("prepend_scheme").get<std::string>();
    if (scheme == "always") return PreTokenizer::Prepend::kAlways;
    if (scheme == "first") return PreTokenizer::Prepend::kFirst;
    if (scheme == "never") return PreTokenizer::Prepend::kNever;
    throw std::invalid_argument("unsupported Metaspace prepend_scheme " + scheme);
  }
  return node.value("add_prefix_space", true) ? PreTokenizer::Prepend::kAlways : PreTokenizer::Prepend::kNever;
}

void add_pre_tokenizer(const json& node, std::vector<PreTokenizer>& out) {
  if (node.is_null()) return;
  const std::string type = type_of(node);
  PreTokenizer step{};
  if (type == "Sequence") {
    for (const json& child : node.at("pretokenizers")) add_pre_tokenizer(child, out);
    return;
  } else if (type == "Split") {
    const std::string behavior = node.value("behavior", std::string("Isolated"));
    if (behavior != "Isolated" || node.value("invert", false))
      throw std::invalid_argument("unsupported Split behavior " + behavior + (node.value("invert", false) ? " (inverted)" : ""));
    Pattern pattern = read_pattern(node);
    step.kind = PreTokenizer::Kind::kSplit;
    step.regex = pattern.regex ? pattern.regex : std::make_shared<const text::Regex>(pattern.literal, /*literal=*/true);
  } else if (type == "ByteLevel") {
    step.kind = PreTokenizer::Kind::kByteLevel;
    step.add_prefix_space = node.value("add_prefix_space", true);
    step.use_regex = node.value("use_regex", true);
  } else if (type == "Metaspace") {
    step.kind = PreTokenizer::Kind::kMetaspace;
    step.replacement = node.value("replacement", std::string(kMetaspace));
    step.prepend = read_prepend_scheme(node);
    step.split = node.value("split", true);
  } else {
    throw std::invalid_argument("unsupported pre_tokenizer " + type);
  }
  out.push_back(std::move(step));
}

void add_decoder(const json& node, std::vector<Decoder>& out) {
  if (node.is_null()) return;
  const std::string type = type_of(node);
  Decoder step{};
  if (type == "Sequence") {
    for (const json& child : node.at("decoders")) add_decoder(child, out);
    return;
  } else if (type == "ByteLevel") {
    step.kind = Decoder::Kind::kByteLevel;
  } else if (type == "Replace") {
    Pattern pattern = read_pattern(node);
    if (pattern.regex) throw std::invalid_argument("unsupported Replace decoder with a regex pattern");
    step.kind = Decoder::Kind::kReplace;
    step.text = pattern.literal;
    step.replacement = node.at("content").get<std::string>();
  } else if (type == "ByteFallback") {
    step.kind = Decoder::Kind::kByteFallback;
  } else if (type == "Fuse") {
    step.kind = Decoder::Kind::kFuse;
  } else if (type == "Strip") {
    step.kind = Decoder::Kind::kStrip;
    step.text = node.at("content").get<std::string>();
    step.strip_start = node.value("start", 0);
    step.strip_stop = node.value("stop", 0);
  } else if (type == "Metaspace") {
    step.kind = Decoder::Kind::kMetaspace;
    step.text = node.value("replacement", std::string(kMetaspace));
    step.strip_first_space = read_prepend_scheme(node) != PreTokenizer::Prepend::kNever;
  } else {
    throw std::invalid_argument("unsupported decoder " + type);
  }
  out.push_back(std::move(step));
}

int checked_id(const json& value, const std::string& what) {
  const std::int64_t id = value.get<std::int64_t>();
  if (id < 0 || id >= kMaxTokenId) throw std::invalid_argument(what + " has id " + std::to_string(id) + " out of range");
  return static_cast<int>(id);
}

void read_vocab(const json& vocab, bpe::BpeModel& model) {
  for (const auto& [piece, value] : vocab.items()) {
    const int id = checked_id(value, "vocabulary piece '" + piece + "'");
    if (static_cast<std::size_t>(id) >= model.pieces.size()) model.pieces.resize(static_cast<std::size_t>(id) + 1);
    model.pieces[static_cast<std::size_t>(id)] = piece;
    model.symbols.emplace(piece, id);
  }
}

/// Merge `rank` as its two pieces: "a b" (older files) or ["a", "b"].
std::pair<std::string, std::string> read_merge(const json& merge, std::size_t rank) {
  if (merge.is_array() && merge.size() == 2) return {merge[0].get<std::string>(), merge[1].get<std::string>()};
  if (merge.is_string()) {
    const std::string line = merge.get<std::string>();
    const std::size_t space = line.find(' ');
    if (space != std::string::npos && line.find(' ', space + 1) == std::string::npos)
      return {line.substr(0, space), line.substr(space + 1)};
  }
  throw std::invalid_argument("merge " + std::to_string(rank) + " is not a pair of pieces: " + merge.dump());
}

int symbol_id(const bpe::BpeModel& model, const std::string& piece, std::size_t rank) {
  const auto it = model.symbols.find(piece);
  if (it == model.symbols.end())
    throw std::invalid_argument("merge " + std::to_string(rank) + " uses '" + piece + "', which is not in the vocabulary");
  return it->second;
}

void read_merges(const json& merges, bpe::BpeModel& model) {
  model.pair_merges.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto [left, right] = read_merge(merges[rank], rank);
    const int merged = symbol_id(model, left + right, rank);
    // A repeated pair takes its later rank, as Hugging Face's map construction does.
    model.pair_merges[bpe::BpeModel::pair_key(symbol_id(model, left, rank), symbol_id(model, right, rank))] = {
        merged, static_cast<double>(rank)};
  }
}

std::string optional_string(const json& node, const char* key) {
  return node.contains(key) && node.at(key).is_string() ? node.at(key).get<std::string>() : std::string();
}

void read_model(const json& node, bpe::BpeModel& model) {
  const std::string type = node.value("type", std::string("BPE"));
  if (type != "BPE") throw std::invalid_argument("unsupported model type " + type + " (only BPE)");
  if (!optional_string(node, "continuing_subword_prefix").empty() || !optional_string(node, "end_of_word_suffix").empty())
    throw std::invalid_argument("unsupported BPE continuing_subword_prefix/end_of_word_suffix");
  read_vocab(node.at("vocab"), model);
  read_merges(node.at("merges"), model);
  model.byte_fallback = node.value("byte_fallback", false);
  model.fuse_unk = node.value("fuse_unk", false);
  model.ignore_merges = node.value("ignore_merges", false);
  const std::string unk = optional_string(node, "unk_token");
  if (!unk.empty() && model.symbols.count(unk)) model.unk = model.symbols.at(unk);
  for (int b = 0; b < 256; ++b) {
    const auto it = model.symbols.find(bpe::byte_piece(static_cast<unsigned char>(b)));
    if (it != model.symbols.end()) model.byte_tokens[static_cast<std::size_t>(b)] = it->second;
  }
}

void read_added_tokens(const json& list, BpePipeline& pipeline) {
  for (const json& node : list) {
    BpePipeline::AddedToken token;
    token.content = node.at("content").get<std::string>();
    token.id = checked_id(node.at("id"), "added token '" + token.content + "'");
    token.special = node.value("special", false);
    token.normalized = node.value("normalized", !token.special);  // Hugging Face's default
    pipeline.added_tokens.push_back(std::move(token));
  }
}

/// The special token TemplateProcessing puts in front of a single sequence (the BOS), if any.
std::string leading_special_token(const json& node) {
  if (node.is_null()) return "";
  const std::string type = type_of(node);
  if (type == "Sequence") {
    for (const json& child : node.at("processors")) {
      const std::string token = leading_special_token(child);
      if (!token.empty()) return token;
    }
    return "";
  }
  if (type != "TemplateProcessing" || !node.contains("single") || node.at("single").empty()) return "";
  const json& first = node.at("single").front();
  return first.contains("SpecialToken") ? first.at("SpecialToken").at("id").get<std::string>() : "";
}

int find_piece(const BpePipeline& pipeline, const std::string& piece) {
  for (const auto& added : pipeline.added_tokens)
    if (added.content == piece) return added.id;
  const auto it = pipeline.model.symbols.find(piece);
  return it == pipeline.model.symbols.end() ? -1 : it->second;
}

/// tokenizer_config.json writes a token as a string, null, or an AddedToken object with "content".
std::string config_token(const json& config, const char* key) {
  if (!config.contains(key)) return "";
  const json& value = config.at(key);
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object()) return value.value("content", std::string());
  return "";
}

/// BOS/EOS and add_bos: tokenizer_config.json decides where it says; otherwise the post-processor's template.
void read_special_roles(const json& config, const std::string& template_bos, BpePipeline& pipeline) {
  const std::string bos = config.contains("bos_token") ? config_token(config, "bos_token") : template_bos;
  pipeline.bos = bos.empty() ? -1 : find_piece(pipeline, bos);
  pipeline.eos = config.contains("eos_token") ? find_piece(pipeline, config_token(config, "eos_token")) : -1;
  const bool add_bos = config.contains("add_bos_token") && config.at("add_bos_token").is_boolean()
                           ? config.at("add_bos_token").get<bool>()
                           : !template_bos.empty();
  pipeline.adds_bos = add_bos && pipeline.bos >= 0;
}

/// `template_bos`: the BOS the post-processor adds, for read_special_roles.
BpePipeline read_pipeline(const json& tokenizer, std::string& template_bos) {
  BpePipeline pipeline;
  pipeline.kind = "hf-bpe";
  read_model(tokenizer.at("model"), pipeline.model);
  read_added_tokens(tokenizer.value("added_tokens", json::array()), pipeline);
  add_normalizer(tokenizer.value("normalizer", json()), pipeline.normalizers);
  add_pre_tokenizer(tokenizer.value("pre_tokenizer", json()), pipeline.pre_tokenizers);
  add_decoder(tokenizer.value("decoder", json()), pipeline.decoders);
  template_bos = leading_special_token(tokenizer.value("post_processor", json()));
  return pipeline;
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& directory) {
  const std::string tokenizer_path = (std::filesystem::path(directory) / "tokenizer.json").string();
  const std::string config_path = (std::filesystem::path(directory) / "tokenizer_config.json").string();
  const json tokenizer = read_json(tokenizer_path);
  BpePipeline pipeline;
  std::string template_bos;
  try {
    pipeline = read_pipeline(tokenizer, template_bos);
  } catch (const std::exception& e) {  // json type/key errors and unsupported components alike
    throw InputError(tokenizer_path + ": " + e.what());
  }
  const json config = std::filesystem::exists(config_path) ? read_json(config_path) : json::object();
  try {
    read_special_roles(config, template_bos, pipeline);
  } catch (const std::exception& e) {
    throw InputError(config_path + ": " + e.what());
  }
  return make_bpe_tokenizer(std::move(pipeline));
}

}  // namespace oscar::model
