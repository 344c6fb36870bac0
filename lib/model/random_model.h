// Random-weight models of a given geometry, for benchmarks at real model sizes without the checkpoint
// (e.g. Qwen3-0.6B) and for tests. Plain C++.
#pragma once

#include <cstdint>
#include <string>

#include "model/model_loader.h"

namespace oscar::model {

/// Weights drawn uniformly from ±0.5/√fan_in (norm weights 1), deterministically from `seed`; no tokenizer.
LoadedModel random_model(const ModelConfig& config, std::uint64_t seed = 0);

/// Named geometries: "qwen3-0.6b" (28 layers, hidden 1024, 16 query / 8 KV heads, head_dim 128,
/// intermediate 3072, vocab 151936, q/k norm, tied), "qwen3-8b", "llama-3.1-8b". Throws oscar::UsageError for
/// other names.
ModelConfig named_geometry(const std::string& name);

}  // namespace oscar::model
