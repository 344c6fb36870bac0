// Hugging Face tokenizer.json (BPE models): byte-level BPE as in Qwen/Llama-3 (NFC normaliser, regex
// pre-tokenizer run through PCRE2, byte-to-unicode alphabet) and SentencePiece-style BPE as in
// TinyStories-656K (metaspace normaliser "▁", byte fallback), with added/special tokens. BOS/EOS and
// add_bos come from tokenizer_config.json when present. Plain C++.
#pragma once

#include <memory>
#include <string>

#include "model/tokenizer.h"

namespace oscar::model {

/// Reads `directory`/tokenizer.json and, if present, `directory`/tokenizer_config.json. Throws
/// oscar::InputError("<file>: <problem>") for a missing/malformed file or an unsupported model/pre-tokenizer.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& directory);

}  // namespace oscar::model
