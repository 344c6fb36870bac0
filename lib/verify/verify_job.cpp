#include "verify/verify_job.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress_bar.h"
#include "core/version.h"
#include "io/file_digest.h"
#include "model/model_loader.h"

namespace oscar::verify {
namespace {

nlohmann::json digests(const std::vector<std::string>& paths) {
  nlohmann::json list = nlohmann::json::array();
  for (const io::FileDigest& digest : io::digest_paths(paths)) {
    list.push_back({{"path", digest.path}, {"bytes", digest.size}, {"sha256", digest.sha256}});
  }
  return list;
}

nlohmann::json options_json(const VerifyRequest& request, const std::vector<std::string>& names,
                            const runtime::MixedCacheConfig& cache, model::ChatTemplate chat_template, bool on_gpu) {
  const EvaluationOptions& e = request.evaluation;
  nlohmann::json options = {{"methods", names},
          {"sink", cache.sink_tokens},
          {"recent", cache.recent_tokens},
          {"group", cache.key_int2.group_size},
          {"k_clip", cache.key_int2.clip_ratio},
          {"v_clip", cache.value_int2.clip_ratio},
          {"scale_dtype", cache.key_int2.scale_type == runtime::ScaleType::kFloat16 ? "float16" : "float32"},
          {"full_precision_storage", cache.full_precision == runtime::FullPrecisionType::kFloat32 ? "float32" : "bfloat16"},
          {"dtype", dtype_name(request.decoder.dtype)},
          {"device", request.decoder.device},
          {"chat_template", model::chat_template_name(chat_template)},
          {"window", e.window},
          {"skip_tokens", e.skip_tokens},
          {"max_text_tokens", e.max_text_tokens},
          {"limit", e.limit},
          {"scoring", e.generate_tokens > 0 ? "generate" : "loglik"},
          {"generate", e.generate_tokens},
          {"temperature", e.sampling.temperature},
          {"top_p", e.sampling.top_p},
          {"seed", request.summary.seed},
          {"bootstrap", request.summary.bootstrap_resamples}};
  // Only where it applies, so that CPU reports (the zoo's verify.json among them) do not change with it.
  if (on_gpu) options["cuda_decode"] = request.cuda_decode;
  return options;
}

std::vector<std::string> markdown_header(const VerifyRequest& request, const model::LoadedModel& loaded,
                                         const runtime::MixedCacheConfig& cache, const EvaluationResult& result) {
  char windows[256];
  std::snprintf(windows, sizeof windows, "cache: sink %d, recent %d (+0..7), group %d, clip K %.2f / V %.2f, %s scales",
                cache.sink_tokens, cache.recent_tokens, cache.key_int2.group_size, cache.key_int2.clip_ratio,
                cache.value_int2.clip_ratio, cache.key_int2.scale_type == runtime::ScaleType::kFloat16 ? "float16" : "float32");
  std::vector<std::string> header = {
      "model: `" + request.model_path + "` (" + model::model_format_name(loaded.format) + ", " +
          std::to_string(loaded.config.n_layers) + " layers, head_dim " + std::to_string(loaded.config.head_dim) + ")",
      "rotations: " + (request.rotations_path.empty() ? std::string("none") : "`" + request.rotations_path + "`"),
      windows,
      "scoring: " + std::string(request.evaluation.generate_tokens > 0 ? "generation" : "log-likelihood of the answer letter") +
          "; text teacher-forced with every position a decode step",
      "tool: oscar-verify " + std::string(kVersion) + "; " + std::to_string(result.forward_tokens) +
          " tokens scored over all methods"};
  return header;
}

}  // namespace

VerifyOutcome run_verify(const VerifyRequest& request) {
  if (request.eval_files.empty()) throw UsageError("--eval: give at least one text or multiple-choice file");
  std::vector<std::string> names = parse_method_list(request.methods);
  if (std::find(names.begin(), names.end(), "fp") == names.end()) names.insert(names.begin(), "fp");  // the reference

  model::LoadedModel loaded = model::load_model(request.model_path, request.tokenizer_path);
  if (!loaded.tokenizer) throw InputError(request.model_path + ": no tokenizer found (pass --tokenizer)");
  const model::ModelConfig& config = loaded.config;
  LayerRotations calibrated;
  const bool wants_oscar = std::find(names.begin(), names.end(), "oscar") != names.end();
  if (wants_oscar) {
    if (request.rotations_path.empty()) throw UsageError("--methods oscar needs --rotations DIR|FILE.gguf");
    calibrated = load_rotations(request.rotations_path, config);
  }
  CacheSettings settings = request.cache;
  settings.full_precision = request.decoder.dtype == DType::kFloat32 ? runtime::FullPrecisionType::kFloat32
                                                                      : runtime::FullPrecisionType::kBFloat16;
  const runtime::MixedCacheConfig cache = cache_config(settings, config);
  const bool on_gpu = request.decoder.device.rfind("cuda", 0) == 0;
  const std::vector<KvMethod> methods = make_methods(names, config, wants_oscar ? &calibrated : nullptr, cache, on_gpu);
  model::Decoder decoder(config, loaded.weights, request.decoder);
  EvaluationOptions evaluation = request.evaluation;
  evaluation.chat_template = model::resolve_chat_template(request.chat_template, *loaded.tokenizer);

  KvMethod reference_method;
  reference_method.name = "fp";
  reference_method.full_precision = true;
  MethodScorer reference(decoder, reference_method, cache);
  std::vector<MethodScorer> scorers;
  scorers.reserve(methods.size());
  for (const KvMethod& method : methods) {
    scorers.emplace_back(decoder, method, cache);
    if (on_gpu) scorers.back().use_cuda_int2_runtime(request.cuda_decode == "tensor-cores");
  }

  ProgressBar bar(!request.quiet);
  const EvaluationResult result =
      evaluate(request.eval_files, *loaded.tokenizer, reference, scorers, evaluation,
               [&](std::int64_t done, std::int64_t total, std::int64_t tokens) { bar.update(done, total, tokens, "tok", "verifying"); });

  VerifyOutcome outcome;
  outcome.summaries = summarize(result, names, request.summary);
  outcome.violations = check_budget(outcome.summaries, request.budget);
  outcome.tokens_per_second = result.seconds > 0 ? static_cast<double>(result.forward_tokens) / result.seconds : 0.0;

  if (!request.report_path.empty()) {
    nlohmann::json report = {{"tool", "oscar-verify"}, {"version", kVersion}};
    report["model"] = model::describe_model(loaded);
    report["model"]["files"] = digests(loaded.files);
    report["rotations"] = {{"path", request.rotations_path}, {"files", digests(calibrated.files)},
                           {"key_objective", calibrated.key_objective}, {"value_objective", calibrated.value_objective}};
    report["eval_files"] = digests(request.eval_files);
    report["options"] = options_json(request, names, cache, evaluation.chat_template, on_gpu);
    for (const MethodSummary& summary : outcome.summaries) report["summary"].push_back(summary_json(summary));
    for (const DatasetResult& dataset : result.datasets) report["datasets"].push_back(dataset_json(dataset, names));
    report["budget"] = {{"max_drop", request.budget.max_drop ? nlohmann::json(*request.budget.max_drop) : nlohmann::json()},
                        {"max_kl", request.budget.max_kl ? nlohmann::json(*request.budget.max_kl) : nlohmann::json()},
                        {"violations", outcome.violations},
                        {"within_budget", outcome.violations.empty()}};
    // No timings: a report is part of a zoo entry, whose files must be bit-reproducible (tokens/s go to stdout).
    report["forward_tokens"] = result.forward_tokens;
    write_file_atomically(request.report_path, report.dump(2) + "\n");
  }
  if (!request.markdown_path.empty()) {
    write_file_atomically(request.markdown_path, markdown_report(markdown_header(request, loaded, cache, result),
                                                                 outcome.summaries, result, names, outcome.violations));
  }
  return outcome;
}

}  // namespace oscar::verify
