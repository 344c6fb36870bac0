// oscar-calibrate: fits OSCAR K/V rotations from captured Q/K/V activations and writes RotationZoo files.
// Only option parsing lives here; the work is in lib/calib (calibration_job.h) and lib/io.
#include <CLI/CLI.hpp>
#include <malloc.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <thread>

#include "calib/calibration_job.h"
#include "core/error.h"
#include "core/progress_bar.h"
#include "core/version.h"
#include "io/dump_convert.h"
#include "linalg/composition.h"
#include "model/decoder.h"
#include "pipeline/model_calibration.h"

namespace {

using namespace oscar;

/// Options shared by every command that reads a dump, as parsed.
struct DumpFlags {
  calib::DumpRequest request;
  bool skip_nonfinite = false;

  calib::DumpRequest finish(bool quiet) const {
    calib::DumpRequest finished = request;
    finished.nonfinite = skip_nonfinite ? calib::NonfinitePolicy::kSkip : calib::NonfinitePolicy::kError;
    finished.show_progress = !quiet;
    return finished;
  }
};

/// Fitting options shared by the default command and merge, as parsed.
struct FitFlags {
  std::string method = "qqt_sst";
  std::string composition = "r_h_pbr";
  std::string granularity = "layer";
  int group_size = 0;

  calib::FitOptions finish() const {
    return {method, linalg::parse_composition(composition), calib::parse_granularity(granularity)};
  }
};

std::vector<std::string> fitted_methods() {
  std::vector<std::string> methods = calib::method_names();
  methods.pop_back();  // "hadamard" fits nothing
  return methods;
}

void add_dump_options(CLI::App& command, DumpFlags& flags, bool sharding) {
  auto& request = flags.request;
  request.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  command.add_option("--from-dump", request.dump_path, "SGLang dump directory (layer_<L>/{q,k,v}/<chunk>.pt) or .h5 dump");
  command.add_option("--layers", request.layers, "Layers to use: A:B (half-open), A: or A; default all");
  command.add_flag("--include-chunk0", request.include_chunk0, "Use chunk 0 (the SGLang warm-up batch, skipped by default)");
  command.add_option("--head-dim", request.head_dim_hint, "Head dimension, for dumps of 2-D [T, H*d] tensors");
  command.add_option("--threads", request.threads, "Worker threads (default: all cores)")->check(CLI::Range(1, 1024));
  command.add_flag("--skip-nonfinite", flags.skip_nonfinite, "Drop tokens with NaN/Inf instead of failing (counted and reported)");
  if (!sharding) return;
  command.add_option("--chunks", request.chunks, "Only chunk ids in A:B (half-open), A: or A: a token shard");
  command.add_option("--tp-rank", request.tp_rank, "Tensor-parallel rank whose heads the dump holds");
  command.add_option("--tp-size", request.tp_size, "Tensor-parallel ranks (the dump holds 1/tp-size of the heads)");
}

void add_fit_options(CLI::App& command, FitFlags& flags, std::vector<std::string> methods) {
  command.add_option("--method", flags.method, "Covariances to fit")->check(CLI::IsMember(methods))->capture_default_str();
  command.add_option("--composition", flags.composition, "Rotation composition")
      ->check(CLI::IsMember(linalg::composition_names()))->capture_default_str();
  command.add_option("--granularity", flags.granularity, "One rotation per layer (format 1) or per KV head (format 2)")
      ->check(CLI::IsMember({"layer", "kv-head"}))->capture_default_str();
  command.add_option("--group-size", flags.group_size, "INT2 group size recorded in the tag (default: head dim)");
}

/// Every option of `command` as given or defaulted, for calibration.json.
nlohmann::json options_record(const CLI::App& command) {
  nlohmann::json record = nlohmann::json::object();
  for (const CLI::Option* option : command.get_options()) {
    if (option->get_lnames().empty() || option->get_name() == "--help" || option->get_name() == "--config") continue;
    const std::string name = option->get_lnames().front();
    const auto results = option->results();
    if (!results.empty()) {
      record[name] = results.size() == 1 ? nlohmann::json(results.front()) : nlohmann::json(results);
    } else if (!option->get_default_str().empty()) {
      record[name] = option->get_default_str();
    }
  }
  return record;
}

void configure_logging(int verbosity, bool quiet) {
  auto logger = spdlog::stderr_color_mt("oscar-calibrate");
  logger->set_pattern("%^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(quiet ? spdlog::level::warn : verbosity > 0 ? spdlog::level::debug : spdlog::level::info);
}

void require(bool condition, const std::string& option, const std::string& why) {
  if (!condition) throw UsageError(option + ": " + why);
}

}  // namespace

int main(int argc, char** argv) {
  // Chunks are tens of MB: keep freed chunk buffers in the heap instead of returning them to the OS, so
  // the next chunk of the same size does not page-fault its way through fresh zeroed memory again.
  mallopt(M_MMAP_THRESHOLD, 512 << 20);
  mallopt(M_TRIM_THRESHOLD, 1024 << 20);

  CLI::App app{"oscar-calibrate " + std::string(kVersion) +
               ": fit OSCAR KV-cache rotations from captured Q/K/V activations and write RotationZoo files\n"
               "  oscar-calibrate --from-dump DUMP --out DIR [--method qqt_sst] [--composition r_h_pbr]\n"
               "  oscar-calibrate --model MODEL --data FILE... --out DIR [--tokens 20000] [--max-prompts N] [--seq-len L] [--generate N]\n"
               "                  [--chat-template auto|chatml|llama3|none] [--device cpu|cuda] [--dtype float32|bfloat16]\n"
               "  oscar-calibrate --method hadamard --num-layers N --head-dim D --out DIR"};
  app.set_version_flag("--version", std::string("oscar-calibrate ") + kVersion);
  app.set_config("--config", "", "Read options from a TOML file (keys are long option names)");
  app.require_subcommand(0, 1);
  app.option_defaults()->always_capture_default();
  int verbosity = 0;
  bool quiet = false;
  app.add_flag("-v,--verbose", verbosity, "More log output (per-layer eigenvalue ranges)");
  app.add_flag("-q,--quiet", quiet, "Only warnings and errors; no progress bar");

  // Default command: calibrate a dump, or write Hadamard rotations.
  DumpFlags dump_flags;
  FitFlags fit_flags;
  calib::CalibrateRequest calibrate;
  int num_layers = 0;
  add_dump_options(app, dump_flags, false);
  add_fit_options(app, fit_flags, calib::method_names());
  app.add_option("--out", calibrate.out_dir, "Output directory for the .pt files and calibration.json");
  app.add_option("--num-layers", num_layers, "Layers to emit with --method hadamard (no input needed)");
  app.add_option("--checkpoint", calibrate.checkpoint_path, "Save accumulator state to this .h5 file while running");
  app.add_option("--save-every", calibrate.checkpoint_every_chunks, "Checkpoint every N chunks (default: per layer)");
  app.add_flag("--resume", calibrate.resume, "Continue from --checkpoint when it exists");
  app.add_flag("!--no-hash", calibrate.hash_inputs, "Do not record SHA-256 digests of the input files");
  pipeline::ModelCalibrationRequest model_request;
  std::string model_dtype = "float32";
  app.add_option("--model", model_request.model_path,
                 "Model to run over --data instead of reading a dump: llama2.c .bin, .gguf, or a Hugging Face directory");
  app.add_option("--tokenizer", model_request.tokenizer_path, "llama2.c tokenizer .bin (default: tokenizer.bin or tok<vocab>.bin beside --model)");
  app.add_option("--data", model_request.data_paths,
                 "Calibration data (with --model): text files, JSONL (\"text\" or \"messages\"), GPQA/MMLU CSV, ARC JSONL");
  app.add_option("--tokens", model_request.budget.max_tokens, "Calibration tokens in total, generated ones included (with --model)")
      ->check(CLI::PositiveNumber);
  app.add_option("--max-prompts", model_request.budget.max_prompts, "Use at most N prompts of --data (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seq-len", model_request.budget.seq_len,
                 "Tokens per sequence: text is cut into windows, prompts truncated (0: the model's context, at most 4096)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--generate", model_request.generate_tokens, "Append N greedy model-generated tokens to every prompt and capture them too")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--chat-template", model_request.chat_template, "Chat template for prompts: auto (from the tokenizer), chatml, llama3, none")
      ->check(CLI::IsMember({"auto", "chatml", "llama3", "none"}));
  app.add_option("--device", model_request.decoder.device, "cpu or cuda[:N] (CUDA needs a LibTorch build with it)");
  app.add_option("--dtype", model_dtype, "Model compute dtype")->check(CLI::IsMember({"float32", "bfloat16"}));
  app.add_option("--batch", model_request.batch_size, "Sequences per forward (with --model)")->check(CLI::PositiveNumber);
  app.add_option("--dump", model_request.dump_path, "Also write the captured activations as an HDF5 dump (with --model)");

  CLI::App* accumulate = app.add_subcommand("accumulate", "Accumulate statistics of a dump (or a shard of it) into a state file");
  DumpFlags accumulate_flags;
  calib::AccumulateRequest accumulate_request;
  std::string pass = "both";
  add_dump_options(*accumulate, accumulate_flags, true);
  accumulate->add_option("--method", accumulate_request.method, "Covariances the state will serve")
      ->check(CLI::IsMember(fitted_methods()))->capture_default_str();
  accumulate->add_option("--pass", pass, "1: first pass only (token shards); 2: sst pass with --query-state; both")
      ->check(CLI::IsMember({"1", "2", "both"}))->capture_default_str();
  accumulate->add_option("--query-state", accumulate_request.query_state_path, "Merged first-pass state (for --pass 2)");
  accumulate->add_option("--state", accumulate_request.state_path, "Output state file (.h5)")->required();

  CLI::App* merge = app.add_subcommand("merge", "Merge shard state files and fit rotations");
  FitFlags merge_fit_flags;
  calib::MergeRequest merge_request;
  merge->add_option("states", merge_request.state_paths, "State files from accumulate")->required();
  add_fit_options(*merge, merge_fit_flags, fitted_methods());
  merge->add_option("--out", merge_request.out_dir, "Output directory for rotations and calibration.json");
  merge->add_option("--state-out", merge_request.state_out_path, "Also write the merged state (.h5)");
  merge->add_flag("--allow-partial", merge_request.allow_partial, "Fit even if shards (layers, chunks, passes) are missing");

  CLI::App* convert = app.add_subcommand("convert", "Convert an activation dump between the SGLang layout and HDF5");
  std::string convert_source, convert_destination;
  convert->add_option("--from-dump", convert_source, "Source dump (directory or .h5)")->required();
  convert->add_option("--to", convert_destination, "Destination: a .h5 file or a new directory")->required();

  for (CLI::App* command : {accumulate, merge, convert}) command->fallthrough();  // -v/-q after the command

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? kExitOk : kExitUsage;
  }
  configure_logging(verbosity, quiet);

  return report_errors("oscar-calibrate", [&] {
    require(model_request.model_path.empty() || dump_flags.request.dump_path.empty(), "--model",
            "cannot be combined with --from-dump (the model is the input)");
    if (accumulate->parsed()) {
      require(!accumulate_flags.request.dump_path.empty(), "--from-dump", "required");
      accumulate_request.input = accumulate_flags.finish(quiet);
      accumulate_request.passes = pass == "1" ? calib::Passes::kFirst : pass == "2" ? calib::Passes::kSecond : calib::Passes::kBoth;
      calib::run_accumulate(accumulate_request);
    } else if (merge->parsed()) {
      require(!merge_request.out_dir.empty() || !merge_request.state_out_path.empty(), "merge", "give --out and/or --state-out");
      merge_request.fit = merge_fit_flags.finish();
      merge_request.group_size = merge_fit_flags.group_size;
      merge_request.options_record = options_record(*merge);
      calib::run_merge(merge_request);
    } else if (convert->parsed()) {
      ProgressBar bar(!quiet);
      io::convert_dump(convert_source, convert_destination, {}, [&](const io::ConvertProgress& p) {
        bar.update(std::int64_t(p.chunks_done), std::int64_t(p.chunks_total), std::int64_t(p.chunks_done), "chunk",
                   "layer " + std::to_string(p.layer_id));
      });
    } else if (fit_flags.method == "hadamard") {
      require(!calibrate.out_dir.empty(), "--out", "required");
      calib::HadamardRequest hadamard{num_layers, dump_flags.request.head_dim_hint, dump_flags.request.dump_path,
                                      calibrate.out_dir, options_record(app)};
      calib::run_hadamard(hadamard);
    } else if (!model_request.model_path.empty()) {
      require(!model_request.data_paths.empty(), "--data", "required with --model");
      require(!calibrate.out_dir.empty(), "--out", "required");
      require(calibrate.checkpoint_path.empty() && !calibrate.resume, "--checkpoint", "only works with --from-dump");
      model_request.fit = fit_flags.finish();
      model_request.out_dir = calibrate.out_dir;
      model_request.group_size = fit_flags.group_size;
      model_request.hash_inputs = calibrate.hash_inputs;
      model_request.options_record = options_record(app);
      model_request.decoder.dtype = model::parse_compute_dtype(model_dtype);
      model_request.progress = !quiet;
      pipeline::run_model_calibration(model_request);
    } else {
      require(!dump_flags.request.dump_path.empty(), "--from-dump", "required (or --model, or --method hadamard)");
      require(!calibrate.out_dir.empty(), "--out", "required");
      require(!calibrate.resume || !calibrate.checkpoint_path.empty(), "--resume", "needs --checkpoint");
      require(calibrate.checkpoint_every_chunks == 0 || !calibrate.checkpoint_path.empty(), "--save-every", "needs --checkpoint");
      calibrate.input = dump_flags.finish(quiet);
      calibrate.fit = fit_flags.finish();
      calibrate.group_size = fit_flags.group_size;
      calibrate.options_record = options_record(app);
      calib::run_calibrate(calibrate);
    }
    return kExitOk;
  });
}
