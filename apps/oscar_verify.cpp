// oscar-verify: how much accuracy an INT2 KV cache costs on a model, against full precision and the simple
// alternatives, and whether that is within budget.
//
//   oscar-verify --model PATH --rotations DIR|FILE.gguf --eval FILE... [--methods fp,naive,hadamard,oscar]
//                [--sink 64 --recent 256 --group 128 --k-clip 0.96 --v-clip 0.92 --scale-dtype float16]
//                [--limit N] [--seed S] [--max-drop POINTS] [--max-kl NATS] [--report out.json] [--markdown out.md]
//
// Exit status: 0 within budget, 1 budget exceeded, 2 bad input or command line.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <thread>

#include "core/error.h"
#include "core/version.h"
#include "command_line.h"
#include "verify/verify_job.h"

using namespace oscar;

namespace {

constexpr int kWithinBudget = 0;
constexpr int kOverBudget = 1;
constexpr int kBadInput = 2;
static_assert(kWithinBudget == kExitOk && kBadInput == kExitUsage, "command_line_exit returns the shared codes for --help and a bad command line");

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"oscar-verify " + std::string(kVersion) +
               ": accuracy of a model with an INT2 KV cache (naive, Hadamard, OSCAR) against full precision.\n"
               "Exit status: 0 within budget, 1 budget exceeded, 2 bad input or command line."};
  app.set_version_flag("--version", std::string("oscar-verify ") + kVersion);
  add_config_option(app);
  verify::VerifyRequest request;
  std::string dtype = "float32", scale_dtype = "float16";
  double max_drop = -1, max_kl = -1;

  app.add_option("--model", request.model_path, "llama2.c .bin, .gguf file or Hugging Face directory")->required();
  app.add_option("--tokenizer", request.tokenizer_path, "llama2.c tokenizer .bin (default: beside the model)");
  app.add_option("--rotations", request.rotations_path, "OSCAR rotations: a zoo directory (k_/v_rotation_*.pt) or a rotation .gguf");
  app.add_option("--eval", request.eval_files,
                 "Text files (perplexity, KL, top-1), GPQA/MMLU CSV, ARC JSONL or JSONL {question, choices, answer}")
      ->required()->check(CLI::ExistingFile);
  app.add_option("--methods", request.methods, "Comma-separated: fp, naive, hadamard, oscar (fp is always run as the reference)")
      ->capture_default_str();
  app.add_option("--sink", request.cache.sink_tokens, "Full-precision sink tokens (multiple of 8)")->capture_default_str();
  app.add_option("--recent", request.cache.recent_tokens, "Full-precision recent window W (multiple of 8; holds W..W+7)")->capture_default_str();
  app.add_option("--group", request.cache.group_size, "INT2 group size (capped at head_dim; d, 64 or 32)")->capture_default_str();
  app.add_option("--k-clip", request.cache.key_clip, "Key clip ratio (0 disables)")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--v-clip", request.cache.value_clip, "Value clip ratio (0 disables)")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--scale-dtype", scale_dtype, "INT2 scale/zero storage")->check(CLI::IsMember({"float16", "float32"}))->capture_default_str();
  app.add_option("--limit", request.evaluation.limit, "Questions per multiple-choice file (0: all)")->check(oscar::kNonNegativeNumber);
  app.add_option("--window", request.evaluation.window, "Text window in tokens (capped at the model's context)")
      ->check(CLI::Range(2, 1 << 30))->capture_default_str();
  app.add_option("--skip-tokens", request.evaluation.skip_tokens, "Text: skip the first N tokens of each file (those calibration read)")
      ->check(oscar::kNonNegativeNumber);
  app.add_option("--max-tokens", request.evaluation.max_text_tokens, "Text: at most N tokens per file (0: all)")->check(oscar::kNonNegativeNumber);
  app.add_option("--generate", request.evaluation.generate_tokens, "Answer by generating N tokens (regex 'Answer: X') instead of log-likelihood")
      ->check(oscar::kNonNegativeNumber);
  app.add_option("--temperature", request.evaluation.sampling.temperature, "Sampling temperature for --generate (0: greedy)")
      ->check(oscar::kNonNegativeNumber)->capture_default_str();
  app.add_option("--top-p", request.evaluation.sampling.top_p, "Nucleus mass for --generate")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  app.add_option("--seed", request.summary.seed, "Seed of sampling and of the bootstrap")->capture_default_str();
  app.add_option("--bootstrap", request.summary.bootstrap_resamples, "Paired-bootstrap resamples for the drop's 95% interval")
      ->check(oscar::kNonNegativeNumber)->capture_default_str();
  app.add_option("--chat-template", request.chat_template, "auto, chatml, llama3 or none")
      ->check(CLI::IsMember({"auto", "chatml", "llama3", "none"}))->capture_default_str();
  app.add_option("--device", request.decoder.device, "cpu or cuda (the model on the GPU, the INT2 cache in the CUDA runtime)")->capture_default_str();
  app.add_option("--cuda-decode", request.cuda_decode,
                 "With --device cuda: the decode kernels (tensor-cores: not yet the default, see docs/PERFORMANCE.md)")
      ->check(CLI::IsMember({"cuda-cores", "tensor-cores"}))->capture_default_str();
  app.add_option("--dtype", dtype, "Compute dtype")->check(CLI::IsMember({"float32", "bfloat16"}))->capture_default_str();
  app.add_option("--threads", request.cache.threads, "Threads of the INT2 attention")->check(oscar::kPositiveNumber);
  app.add_option("--max-drop", max_drop, "Budget: largest accuracy drop of oscar vs fp, in points")->check(oscar::kNonNegativeNumber);
  app.add_option("--max-kl", max_kl, "Budget: largest mean KL(fp || oscar) per token, in nats")->check(oscar::kNonNegativeNumber);
  app.add_option("--report", request.report_path, "Write the JSON report here");
  app.add_option("--markdown", request.markdown_path, "Write the Markdown report here");
  app.add_flag("-q,--quiet", request.quiet, "No progress bar");

  request.cache.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return command_line_exit(app, error, "oscar-verify");
  }
  try {
    request.decoder.dtype = model::parse_compute_dtype(dtype);
    request.cache.scale_type = scale_dtype == "float32" ? runtime::ScaleType::kFloat32 : runtime::ScaleType::kFloat16;
    if (max_drop >= 0) request.budget.max_drop = max_drop;
    if (max_kl >= 0) request.budget.max_kl = max_kl;
    const verify::VerifyOutcome outcome = verify::run_verify(request);
    std::cout << verify::summary_table(outcome.summaries);
    std::printf("teacher-forced scoring: %.0f tokens/s (all methods)\n", outcome.tokens_per_second);
    for (const std::string& line : outcome.violations) std::fprintf(stderr, "oscar-verify: over budget: %s\n", line.c_str());
    return outcome.violations.empty() ? kWithinBudget : kOverBudget;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "oscar-verify: error: %s\n", error.what());
    return kBadInput;
  }
}
