// The vocabulary embedded in a GGUF file (tokenizer.ggml.*): "llama" (SentencePiece pieces with scores, merged
// by best score, byte fallback) and "gpt2" (byte-level BPE with merges and the pre-tokenizer regex named by
// tokenizer.ggml.pre). Plain C++.
#pragma once

#include <memory>

#include "model/gguf_file.h"
#include "model/tokenizer.h"

namespace oscar::model {

/// Throws oscar::InputError("<path>: <problem>") when tokenizer.ggml.model is missing or unsupported.
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const GgufFile& file);

}  // namespace oscar::model
