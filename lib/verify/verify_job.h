// The oscar-verify job: load the model, tokenizer and rotations, build the methods, evaluate, summarise,
// write the reports. The app only parses options into a VerifyRequest.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/decoder.h"
#include "verify/evaluation.h"
#include "verify/int2_kv_attention.h"
#include "verify/verify_report.h"

namespace oscar::verify {

struct VerifyRequest {
  std::string model_path;
  std::string tokenizer_path;      ///< llama2.c only; empty: beside the model
  std::string rotations_path;      ///< DIR or FILE.gguf; needed by the oscar method
  std::vector<std::string> eval_files;
  std::string methods = "fp,naive,hadamard,oscar";
  std::string chat_template = "auto";
  model::DecoderOptions decoder;
  /// --device cuda: the decode kernels, "cuda-cores" or "tensor-cores" (runtime::gpu::DecodeKernel).
  std::string cuda_decode = "cuda-cores";
  CacheSettings cache;
  EvaluationOptions evaluation;
  SummaryOptions summary;
  Budget budget;
  std::string report_path;         ///< JSON; empty: none
  std::string markdown_path;       ///< Markdown; empty: none
  bool quiet = false;
};

struct VerifyOutcome {
  std::vector<MethodSummary> summaries;
  std::vector<std::string> violations;  ///< empty: within budget
  double tokens_per_second = 0;         ///< teacher-forced tokens over all methods
};

/// Throws oscar::InputError / oscar::UsageError on bad input, before any report is written.
VerifyOutcome run_verify(const VerifyRequest& request);

}  // namespace oscar::verify
