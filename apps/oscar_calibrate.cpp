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
#include "command_line.h"
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

/// The default command: calibrate a dump, run a model over calibration data, or write Hadamard rotations.
struct CalibrateCommand {
  DumpFlags dump_flags;
  FitFlags fit_flags;
  calib::CalibrateRequest calibrate;
  int num_layers = 0;
  pipeline::ModelCalibrationRequest model_request;
  std::string model_dtype = "float32";
};

void add_calibrate_options(CLI::App& app, CalibrateCommand& c) {
  add_dump_options(app, c.dump_flags, false);
  add_fit_options(app, c.fit_flags, calib::method_names());
  app.add_option("--out", c.calibrate.out_dir, "Output directory for the .pt files and calibration.json");
  app.add_option("--num-layers", c.num_layers, "Layers to emit with --method hadamard (no input needed)");
  app.add_option("--checkpoint", c.calibrate.checkpoint_path, "Save accumulator state to this .h5 file while running");
  app.add_option("--save-every", c.calibrate.checkpoint_every_chunks, "Checkpoint every N chunks (default: per layer)");
  app.add_flag("--resume", c.calibrate.resume, "Continue from --checkpoint when it exists");
  app.add_flag("!--no-hash", c.calibrate.hash_inputs, "Do not record SHA-256 digests of the input files");
  pipeline::ModelCalibrationRequest& model_run = c.model_request;
  app.add_option("--model", model_run.model_path,
                 "Model to run over --data instead of reading a dump: llama2.c .bin, .gguf, or a Hugging Face directory");
  app.add_option("--tokenizer", model_run.tokenizer_path, "llama2.c tokenizer .bin (default: tokenizer.bin or tok<vocab>.bin beside --model)");
  app.add_option("--data", model_run.data_paths,
                 "Calibration data (with --model): text files, JSONL (\"text\" or \"messages\"), GPQA/MMLU CSV, ARC JSONL");
  app.add_option("--tokens", model_run.budget.max_tokens, "Calibration tokens in total, generated ones included (with --model)")
      ->check(oscar::kPositiveNumber);
  app.add_option("--max-prompts", model_run.budget.max_prompts, "Use at most N prompts of --data (0: no limit)")
      ->check(oscar::kNonNegativeNumber);
  app.add_option("--seq-len", model_run.budget.seq_len,
                 "Tokens per sequence: text is cut into windows, prompts truncated (0: the model's context, at most 4096)")
      ->check(oscar::kNonNegativeNumber);
  app.add_option("--generate", model_run.generate_tokens, "Append N greedy model-generated tokens to every prompt and capture them too")
      ->check(oscar::kNonNegativeNumber);
  app.add_option("--chat-template", model_run.chat_template, "Chat template for prompts: auto (from the tokenizer), chatml, llama3, none")
      ->check(CLI::IsMember({"auto", "chatml", "llama3", "none"}));
  app.add_option("--device", model_run.decoder.device, "cpu or cuda[:N] (CUDA needs a LibTorch build with it)");
  app.add_option("--dtype", c.model_dtype, "Model compute dtype")->check(CLI::IsMember({"float32", "bfloat16"}));
  app.add_option("--batch", model_run.batch_size, "Sequences per forward (with --model)")->check(oscar::kPositiveNumber);
  app.add_option("--dump", model_run.dump_path, "Also write the captured activations as an HDF5 dump (with --model)");
}

void run_calibrate_command(const CLI::App& app, CalibrateCommand& c, bool quiet) {
  calib::CalibrateRequest& calibrate = c.calibrate;
  pipeline::ModelCalibrationRequest& model_run = c.model_request;
  const calib::DumpRequest& dump = c.dump_flags.request;
  if (c.fit_flags.method == "hadamard") {
    require(!calibrate.out_dir.empty(), "--out", "required");
    calib::run_hadamard({c.num_layers, dump.head_dim_hint, dump.dump_path, calibrate.out_dir, options_record(app)});
  } else if (!model_run.model_path.empty()) {
    require(!model_run.data_paths.empty(), "--data", "required with --model");
    require(!calibrate.out_dir.empty(), "--out", "required");
    require(calibrate.checkpoint_path.empty() && !calibrate.resume, "--checkpoint", "only works with --from-dump");
    model_run.fit = c.fit_flags.finish();
    model_run.out_dir = calibrate.out_dir;
    model_run.group_size = c.fit_flags.group_size;
    model_run.hash_inputs = calibrate.hash_inputs;
    model_run.options_record = options_record(app);
    model_run.decoder.dtype = model::parse_compute_dtype(c.model_dtype);
    model_run.progress = !quiet;
    pipeline::run_model_calibration(model_run);
  } else {
    require(!dump.dump_path.empty(), "--from-dump", "required (or --model, or --method hadamard)");
    require(!calibrate.out_dir.empty(), "--out", "required");
    require(!calibrate.resume || !calibrate.checkpoint_path.empty(), "--resume", "needs --checkpoint");
    require(calibrate.checkpoint_every_chunks == 0 || !calibrate.checkpoint_path.empty(), "--save-every", "needs --checkpoint");
    calibrate.input = c.dump_flags.finish(quiet);
    calibrate.fit = c.fit_flags.finish();
    calibrate.group_size = c.fit_flags.group_size;
    calibrate.options_record = options_record(app);
    calib::run_calibrate(calibrate);
  }
}

/// `accumulate`: one shard's statistics into a state file.
struct AccumulateCommand {
  CLI::App* command = nullptr;
  DumpFlags flags;
  calib::AccumulateRequest request;
  std::string pass = "both";
};

void add_accumulate_command(CLI::App& app, AccumulateCommand& c) {
  c.command = app.add_subcommand("accumulate", "Accumulate statistics of a dump (or a shard of it) into a state file");
  add_dump_options(*c.command, c.flags, true);
  c.command->add_option("--method", c.request.method, "Covariances the state will serve")
      ->check(CLI::IsMember(fitted_methods()))->capture_default_str();
  c.command->add_option("--pass", c.pass, "1: first pass only (token shards); 2: sst pass with --query-state; both")
      ->check(CLI::IsMember({"1", "2", "both"}))->capture_default_str();
  c.command->add_option("--query-state", c.request.query_state_path, "Merged first-pass state (for --pass 2)");
  c.command->add_option("--state", c.request.state_path, "Output state file (.h5)")->required();
}

void run_accumulate_command(AccumulateCommand& c, bool quiet) {
  require(!c.flags.request.dump_path.empty(), "--from-dump", "required");
  c.request.input = c.flags.finish(quiet);
  c.request.passes = c.pass == "1" ? calib::Passes::kFirst : c.pass == "2" ? calib::Passes::kSecond : calib::Passes::kBoth;
  calib::run_accumulate(c.request);
}

/// `merge`: shard states into one, and the rotations fitted from it.
struct MergeCommand {
  CLI::App* command = nullptr;
  FitFlags fit_flags;
  calib::MergeRequest request;
};

void add_merge_command(CLI::App& app, MergeCommand& c) {
  c.command = app.add_subcommand("merge", "Merge shard state files and fit rotations");
  c.command->add_option("states", c.request.state_paths, "State files from accumulate")->required();
  add_fit_options(*c.command, c.fit_flags, fitted_methods());
  c.command->add_option("--out", c.request.out_dir, "Output directory for rotations and calibration.json");
  c.command->add_option("--state-out", c.request.state_out_path, "Also write the merged state (.h5)");
  c.command->add_flag("--allow-partial", c.request.allow_partial, "Fit even if shards (layers, chunks, passes) are missing");
}

void run_merge_command(MergeCommand& c) {
  require(!c.request.out_dir.empty() || !c.request.state_out_path.empty(), "merge", "give --out and/or --state-out");
  c.request.fit = c.fit_flags.finish();
  c.request.group_size = c.fit_flags.group_size;
  c.request.options_record = options_record(*c.command);
  calib::run_merge(c.request);
}

/// `convert`: a dump between the SGLang directory layout and HDF5.
struct ConvertCommand {
  CLI::App* command = nullptr;
  std::string source, destination;
};

void add_convert_command(CLI::App& app, ConvertCommand& c) {
  c.command = app.add_subcommand("convert", "Convert an activation dump between the SGLang layout and HDF5");
  c.command->add_option("--from-dump", c.source, "Source dump (directory or .h5)")->required();
  c.command->add_option("--to", c.destination, "Destination: a .h5 file or a new directory")->required();
}

void run_convert_command(const ConvertCommand& c, bool quiet) {
  ProgressBar bar(!quiet);
  io::convert_dump(c.source, c.destination, {}, [&](const io::ConvertProgress& p) {
    bar.update(std::int64_t(p.chunks_done), std::int64_t(p.chunks_total), std::int64_t(p.chunks_done), "chunk",
               "layer " + std::to_string(p.layer_id));
  });
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
  add_config_option(app);
  app.require_subcommand(0, 1);
  app.option_defaults()->always_capture_default();
  int verbosity = 0;
  bool quiet = false;
  app.add_flag("-v,--verbose", verbosity, "More log output (per-layer eigenvalue ranges)");
  app.add_flag("-q,--quiet", quiet, "Only warnings and errors; no progress bar");

  CalibrateCommand calibrate;
  AccumulateCommand accumulate;
  MergeCommand merge;
  ConvertCommand convert;
  add_calibrate_options(app, calibrate);
  add_accumulate_command(app, accumulate);
  add_merge_command(app, merge);
  add_convert_command(app, convert);
  for (CLI::App* command : {accumulate.command, merge.command, convert.command}) command->fallthrough();  // -v/-q after the command

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return command_line_exit(app, error, "oscar-calibrate");
  }
  configure_logging(verbosity, quiet);

  return report_errors("oscar-calibrate", [&] {
    require(calibrate.model_request.model_path.empty() || calibrate.dump_flags.request.dump_path.empty(), "--model",
            "cannot be combined with --from-dump (the model is the input)");
    if (accumulate.command->parsed()) {
      run_accumulate_command(accumulate, quiet);
    } else if (merge.command->parsed()) {
      run_merge_command(merge);
    } else if (convert.command->parsed()) {
      run_convert_command(convert, quiet);
    } else {
      run_calibrate_command(app, calibrate, quiet);
    }
    return kExitOk;
  });
}
