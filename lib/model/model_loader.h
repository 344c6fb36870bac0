// One entry point for every model format: a llama2.c .bin (with its tokenizer .bin), a GGUF file, or a Hugging
// Face directory (config.json, *.safetensors, tokenizer.json). Plain C++: the decoder (decoder.h) takes the
// result.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "model/model_config.h"
#include "model/model_weights.h"
#include "model/tokenizer.h"

namespace oscar::model {

enum class ModelFormat { kLlama2c, kGguf, kHuggingFace };

struct LoadedModel {
  ModelFormat format = ModelFormat::kLlama2c;
  std::string path;                     ///< what the user passed
  ModelConfig config;
  ModelWeights weights;
  std::unique_ptr<Tokenizer> tokenizer;  ///< null only when no tokenizer was found
  std::vector<std::string> files;       ///< every file read (for hashing in calibration.json)
};

/// "llama2c", "gguf", "huggingface".
std::string model_format_name(ModelFormat format);

/// Detects the format: a directory -> Hugging Face; "GGUF" magic -> GGUF; otherwise llama2.c. For llama2.c,
/// `tokenizer_path` names the tokenizer .bin; when empty, "tokenizer.bin" or "tok<vocab>.bin" beside the
/// model is used if present. Throws oscar::InputError naming the file and the problem.
LoadedModel load_model(const std::string& path, const std::string& tokenizer_path = "");

/// What a model is, as JSON: path, format, architecture, geometry, RoPE, variant switches, the stored weight
/// dtypes with their tensor counts, parameter count and the tokenizer (kind, vocabulary, BOS/EOS). Used by
/// `oscar-model info` and recorded in calibration.json.
nlohmann::json describe_model(const LoadedModel& model);

/// Every tensor the decoder reads (model_weights.h), with the shape the config implies; throws
/// oscar::InputError naming the first missing or misshapen one. Loaders call it so that a bad file fails at
/// load, naming the file.
void check_decoder_weights(const ModelConfig& config, const ModelWeights& weights);

/// Format-specific loaders (model_loader.cpp dispatches to these).
LoadedModel load_llama2c_model(const std::string& path, const std::string& tokenizer_path);
LoadedModel load_gguf_model(const std::string& path);
LoadedModel load_huggingface_model(const std::string& directory);

}  // namespace oscar::model
