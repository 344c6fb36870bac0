// oscar-model: check that a model loads and behaves before calibrating it.
//
//   oscar-model info PATH [--json]
//   oscar-model generate PATH --prompt TEXT [--max-tokens N] [--temperature T --top-p P --seed S] [--chat-template ...]
//   oscar-model perplexity PATH --text FILE [--seq-len L] [--max-tokens N]
//   oscar-model tokenize PATH --text TEXT
//   oscar-model bench PATH | --random qwen3-0.6b [--sequences N --seq-len L --batch B --decode-tokens N]
//
// PATH is a llama2.c .bin (tokenizer beside it or --tokenizer), a .gguf file, or a Hugging Face directory.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>

#include "command_line.h"
#include "core/error.h"
#include "core/progress_bar.h"
#include "core/stopwatch.h"
#include "core/version.h"
#include "eval/perplexity.h"
#include "model/chat_template.h"
#include "model/decoder.h"
#include "model/generation.h"
#include "model/model_loader.h"
#include "model/random_model.h"
#include "pipeline/model_bench.h"

using namespace oscar;

namespace {

struct ModelFlags {
  std::string path, tokenizer_path, device = "cpu", dtype = "float32";
};

void add_model_options(CLI::App& command, ModelFlags& flags, bool runs_model) {
  command.add_option("model", flags.path, "llama2.c .bin, .gguf file or Hugging Face directory")->required();
  command.add_option("--tokenizer", flags.tokenizer_path, "llama2.c tokenizer .bin (default: beside the model)");
  if (!runs_model) return;
  command.add_option("--device", flags.device, "cpu or cuda[:N]");
  command.add_option("--dtype", flags.dtype, "Compute dtype")->check(CLI::IsMember({"float32", "bfloat16"}));
}

model::LoadedModel load(const ModelFlags& flags, bool need_tokenizer) {
  model::LoadedModel loaded = model::load_model(flags.path, flags.tokenizer_path);
  if (need_tokenizer && !loaded.tokenizer) throw InputError(flags.path + ": no tokenizer found (give --tokenizer)");
  return loaded;
}

model::Decoder make_decoder(const model::LoadedModel& loaded, const ModelFlags& flags) {
  return model::Decoder(loaded.config, loaded.weights, {model::parse_compute_dtype(flags.dtype), flags.device});
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void print_info(const model::LoadedModel& loaded, bool as_json) {
  const nlohmann::json info = model::describe_model(loaded);
  if (as_json) {
    std::cout << info.dump(2) << "\n";
    return;
  }
  for (const auto& [key, value] : info.items()) std::cout << key << ": " << (value.is_string() ? value.get<std::string>() : value.dump()) << "\n";
  if (loaded.tokenizer) {
    std::cout << "chat_template: " << model::chat_template_name(model::detect_chat_template(*loaded.tokenizer)) << "\n";
  }
}

struct GenerateFlags {
  std::string prompt, chat_template = "none";
  int max_tokens = 64;
  model::SamplingOptions sampling;
};

void run_generate(const ModelFlags& flags, const GenerateFlags& generate) {
  const model::LoadedModel loaded = load(flags, true);
  const model::Tokenizer& tokenizer = *loaded.tokenizer;
  const model::ChatTemplate chat_template = model::resolve_chat_template(generate.chat_template, tokenizer);
  const std::vector<int> prompt = model::encode_chat(tokenizer, chat_template, {{"user", generate.prompt}});
  model::Decoder decoder = make_decoder(loaded, flags);
  model::GenerationOptions options;
  options.max_new_tokens = generate.max_tokens;
  options.sampling = generate.sampling;
  options.stop_tokens = model::generation_stop_tokens(tokenizer, chat_template);
  const Stopwatch stopwatch;
  const std::vector<int> generated = model::generate(decoder, {prompt}, options).front();
  const double seconds = stopwatch.seconds();
  std::cout << tokenizer.decode(prompt) << tokenizer.decode(generated) << "\n";
  spdlog::info("{} prompt + {} generated tokens in {:.2f} s", prompt.size(), generated.size(), seconds);
}

void run_perplexity(const ModelFlags& flags, const std::string& text_path, int seq_len, int stride, std::int64_t max_tokens,
                    bool quiet) {
  const model::LoadedModel loaded = load(flags, true);
  model::Decoder decoder = make_decoder(loaded, flags);
  const int window = seq_len > 0 ? seq_len : loaded.config.max_seq_len;
  ProgressBar bar(!quiet);
  const Stopwatch stopwatch;
  const eval::PerplexityResult result =
      eval::text_perplexity(decoder, *loaded.tokenizer, read_file(text_path), window, stride, max_tokens,
                            [&](std::int64_t done, std::int64_t total) { bar.update(done, total, done, "tok", "scoring"); });
  const double seconds = stopwatch.seconds();
  std::printf("tokens %lld  nll %.4f nats/token  perplexity %.4f  (%.0f tok/s, window %d, stride %d)\n",
              static_cast<long long>(result.tokens_scored), result.mean_nll(), result.perplexity(),
              double(result.tokens_scored) / seconds, window, stride > 0 ? stride : window / 2);
}

void run_tokenize(const ModelFlags& flags, const std::string& text, bool with_bos) {
  const model::LoadedModel loaded = load(flags, true);
  const model::Tokenizer& tokenizer = *loaded.tokenizer;
  const std::vector<int> ids = with_bos ? tokenizer.encode_with_bos(text) : tokenizer.encode(text);
  for (int id : ids) std::printf("%d\t%s\n", id, tokenizer.piece(id).c_str());
  std::printf("%zu tokens\n", ids.size());
}

struct BenchFlags {
  std::string random_geometry;
  pipeline::ModelBenchOptions options;
};

void run_bench(const ModelFlags& flags, const BenchFlags& bench) {
  if (flags.path.empty() == bench.random_geometry.empty()) throw UsageError("bench: give a model path or --random GEOMETRY (not both)");
  const model::LoadedModel loaded = bench.random_geometry.empty() ? load(flags, false)
                                                                  : model::random_model(model::named_geometry(bench.random_geometry));
  model::Decoder decoder = make_decoder(loaded, flags);
  const pipeline::ModelBenchResult r = pipeline::bench_model(decoder, bench.options);
  std::printf("model %s  (%s, %d layers, hidden %d, heads %d/%d, head_dim %d)  dtype %s  device %s\n", loaded.path.c_str(),
              model::architecture_name(loaded.config.architecture).c_str(), loaded.config.n_layers, loaded.config.dim,
              loaded.config.n_heads, loaded.config.n_kv_heads, loaded.config.head_dim, flags.dtype.c_str(), flags.device.c_str());
  std::printf("prefill  %d x %d tokens, batch %d: %.1f tok/s\n", bench.options.sequences, bench.options.seq_len,
              bench.options.batch_size, r.prefill_tokens_per_second);
  std::printf("decode   %d steps after %d tokens: %.1f tok/s\n", bench.options.decode_tokens, r.decode_context,
              r.decode_tokens_per_second);
  std::printf("calibrate qqt_sst (2 capture passes): %.3f s vs plain forward %.3f s per pass: capture overhead %+.1f%%\n",
              r.calibration_seconds, r.plain_forward_seconds, 100 * r.capture_overhead());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"oscar-model " + std::string(kVersion) + ": load a model (llama2.c, GGUF, Hugging Face) and check it before calibrating"};
  app.set_version_flag("--version", std::string("oscar-model ") + kVersion);
  app.require_subcommand(1);
  bool quiet = false;
  app.add_flag("-q,--quiet", quiet, "Only warnings and errors; no progress bar");

  ModelFlags info_flags, generate_flags, perplexity_flags, tokenize_flags;
  CLI::App* info = app.add_subcommand("info", "Architecture, geometry, weight dtypes, tokenizer");
  add_model_options(*info, info_flags, false);
  bool info_json = false;
  info->add_flag("--json", info_json, "Print JSON");

  CLI::App* generate = app.add_subcommand("generate", "Continue a prompt");
  add_model_options(*generate, generate_flags, true);
  GenerateFlags generate_options;
  generate->add_option("--prompt", generate_options.prompt, "Prompt text")->required();
  generate->add_option("--max-tokens", generate_options.max_tokens, "Tokens to generate")->check(oscar::kPositiveNumber)->capture_default_str();
  generate->add_option("--temperature", generate_options.sampling.temperature, "0: greedy")->check(oscar::kNonNegativeNumber)->capture_default_str();
  generate->add_option("--top-p", generate_options.sampling.top_p, "Nucleus sampling mass")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  generate->add_option("--seed", generate_options.sampling.seed, "Sampling seed")->capture_default_str();
  generate->add_option("--chat-template", generate_options.chat_template, "auto, chatml, llama3 or none (raw prompt)")
      ->check(CLI::IsMember({"auto", "chatml", "llama3", "none"}))->capture_default_str();

  CLI::App* perplexity = app.add_subcommand("perplexity", "Mean negative log-likelihood and perplexity of a text");
  add_model_options(*perplexity, perplexity_flags, true);
  std::string text_path;
  int seq_len = 0, stride = 0;
  std::int64_t max_tokens = 0;
  perplexity->add_option("--text", text_path, "Text file")->required();
  perplexity->add_option("--seq-len", seq_len, "Window length (default: the model's context)")->check(oscar::kNonNegativeNumber);
  perplexity->add_option("--stride", stride, "Window step; only new tokens are scored (default: half the window; = --seq-len for disjoint windows)")
      ->check(oscar::kNonNegativeNumber);
  perplexity->add_option("--max-tokens", max_tokens, "Score at most N tokens (0: all)")->check(oscar::kNonNegativeNumber);

  CLI::App* tokenize = app.add_subcommand("tokenize", "Print token ids and pieces of a text");
  add_model_options(*tokenize, tokenize_flags, false);
  std::string text;
  bool with_bos = false;
  tokenize->add_option("--text", text, "Text to tokenize")->required();
  tokenize->add_flag("--bos", with_bos, "Prepend BOS when the model uses one");
  CLI::App* bench = app.add_subcommand("bench", "Prefill/decode tokens/s and capture overhead (random token ids)");
  ModelFlags bench_flags;
  BenchFlags bench_options;
  bench->add_option("model", bench_flags.path, "llama2.c .bin, .gguf file or Hugging Face directory");
  bench->add_option("--tokenizer", bench_flags.tokenizer_path, "llama2.c tokenizer .bin");
  bench->add_option("--random", bench_options.random_geometry, "Random weights of a named geometry instead: qwen3-0.6b, qwen3-8b, llama-3.1-8b");
  bench->add_option("--device", bench_flags.device, "cpu or cuda[:N]");
  bench->add_option("--dtype", bench_flags.dtype, "Compute dtype")->check(CLI::IsMember({"float32", "bfloat16"}));
  bench->add_option("--sequences", bench_options.options.sequences, "Sequences")->check(oscar::kPositiveNumber)->capture_default_str();
  bench->add_option("--seq-len", bench_options.options.seq_len, "Tokens per sequence")->check(oscar::kPositiveNumber)->capture_default_str();
  bench->add_option("--batch", bench_options.options.batch_size, "Sequences per forward")->check(oscar::kPositiveNumber)->capture_default_str();
  bench->add_option("--decode-tokens", bench_options.options.decode_tokens, "Decode steps")->check(oscar::kPositiveNumber)->capture_default_str();
  for (CLI::App* command : {info, generate, perplexity, tokenize, bench}) command->fallthrough();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return command_line_exit(app, error, "oscar-model");
  }
  auto logger = spdlog::stderr_color_mt("oscar-model");  // stdout carries the results
  logger->set_pattern("%^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(quiet ? spdlog::level::warn : spdlog::level::info);
  return report_errors("oscar-model", [&] {
    if (info->parsed()) print_info(load(info_flags, false), info_json);
    if (generate->parsed()) run_generate(generate_flags, generate_options);
    if (perplexity->parsed()) run_perplexity(perplexity_flags, text_path, seq_len, stride, max_tokens, quiet);
    if (tokenize->parsed()) run_tokenize(tokenize_flags, text, with_bos);
    if (bench->parsed()) run_bench(bench_flags, bench_options);
    return kExitOk;
  });
}
