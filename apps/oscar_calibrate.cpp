// oscar-calibrate: fits OSCAR K/V rotations from captured Q/K/V activations and writes RotationZoo files.
// Only option parsing lives here; the work is in lib/calib (calibration_job.h) and lib/io.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <malloc.h>

#include <cstdio>
#include <thread>

#include "calib/calibration_job.h"
#include "core/error.h"
#include "core/progress_bar.h"
#include "core/version.h"
#include "io/dump_convert.h"
#include "linalg/composition.h"

namespace {

using namespace oscar;

struct CommonFlags {
  int verbosity = 0;
  bool quiet = false;
};

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const auto& item : items) text += (text.empty() ? "" : "|") + item;
  return text;
}

/// Options every command that reads a dump shares.
void add_dump_options(CLI::App& command, calib::DumpRequest& input, bool& skip_nonfinite, std::string& chunks) {
  command.add_option("--from-dump", input.dump_path, "SGLang dump directory (layer_<L>/{q,k,v}/<chunk>.pt) or .h5 dump");
  command.add_option("--layers", input.layers, "Layers to use: A:B (half-open), A: or A; default all");
  command.add_flag("--include-chunk0", input.include_chunk0, "Use chunk 0 (the SGLang warm-up batch, skipped by default)");
  command.add_option("--head-dim", input.head_dim_hint, "Head dimension, for dumps of 2-D [T, H*d] tensors");
  command.add_option("--threads", input.threads, "Worker threads (default: all cores)")->check(CLI::Range(1, 1024));
  command.add_flag("--skip-nonfinite", skip_nonfinite, "Drop tokens with NaN/Inf instead of failing (counted and reported)");
  command.add_option("--chunks", chunks, "Only chunks with ids in [A, B) (a token shard), as A:B");
  command.add_option("--tp-rank", input.tp_rank, "Tensor-parallel rank whose heads the dump holds");
  command.add_option("--tp-size", input.tp_size, "Tensor-parallel ranks (the dump holds 1/tp-size of the heads)");
}

void add_fit_options(CLI::App& command, calib::FitOptions& fit, std::string& composition, std::string& granularity,
                     int& group_size) {
  command.add_option("--method", fit.method, "Covariances to fit")->check(CLI::IsMember(calib::method_names()))
      ->capture_default_str();
  command.add_option("--composition", composition, "Rotation composition (" + join(linalg::composition_names()) + ")")
      ->check(CLI::IsMember(linalg::composition_names()))->capture_default_str();
  command.add_option("--granularity", granularity, "One rotation per layer (format 1) or per KV head (format 2)")
      ->check(CLI::IsMember({"layer", "kv-head"}))->capture_default_str();
  command.add_option("--group-size", group_size, "INT2 group size recorded in the tag (default: head dim)");
}

std::optional<std::pair<int, int>> parse_chunk_range(const std::string& text) {
  if (text.empty()) return std::nullopt;
  const auto colon = text.find(':');
  if (colon == std::string::npos) throw CLI::ValidationError("--chunks", "expected A:B");
  try {
    return std::make_pair(std::stoi(text.substr(0, colon)), std::stoi(text.substr(colon + 1)));
  } catch (const std::exception&) {
    throw CLI::ValidationError("--chunks", "expected A:B, got " + text);
  }
}

void finish_dump_request(calib::DumpRequest& input, bool skip_nonfinite, const std::string& chunks, bool quiet) {
  input.nonfinite = skip_nonfinite ? calib::NonfinitePolicy::kSkip : calib::NonfinitePolicy::kError;
  input.chunk_range = parse_chunk_range(chunks);
  input.show_progress = !quiet;
}

/// Every option as given, for calibration.json (CLI11 renders them as a config file).
nlohmann::json options_record(const CLI::App& app, const CLI::App* command) {
  nlohmann::json record = nlohmann::json::object();
  for (const CLI::App* scope : {&app, command}) {
    if (!scope) continue;
    for (const CLI::Option* option : scope->get_options()) {
      if (option->get_name() == "--help" || option->get_name() == "--config" || option->get_lnames().empty()) continue;
      const auto results = option->results();
      const std::string name = option->get_lnames().front();
      if (!results.empty()) {
        record[name] = results.size() == 1 ? nlohmann::json(results.front()) : nlohmann::json(results);
      } else if (!option->get_default_str().empty()) {
        record[name] = option->get_default_str();  // the effective default
      }
    }
  }
  return record;
}

void configure_logging(const CommonFlags& flags) {
  auto logger = spdlog::stderr_color_mt("oscar-calibrate");
  logger->set_pattern("%^%l%$: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(flags.quiet ? spdlog::level::warn : flags.verbosity > 0 ? spdlog::level::debug : spdlog::level::info);
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
               "  oscar-calibrate --method hadamard --num-layers N --head-dim D --out DIR"};
  app.set_version_flag("--version", std::string("oscar-calibrate ") + kVersion);
  app.set_config("--config", "", "Read options from a TOML file (keys are long option names)");
  app.require_subcommand(0, 1);
  app.option_defaults()->always_capture_default();

  CommonFlags flags;
  app.add_flag("-v,--verbose", flags.verbosity, "More log output (per-layer eigenvalue ranges)");
  app.add_flag("-q,--quiet", flags.quiet, "Only warnings and errors; no progress bar");

  // Default command: calibrate a dump (or write Hadamard rotations).
  calib::CalibrateRequest calibrate;
  calibrate.input.threads = int(std::max(1u, std::thread::hardware_concurrency()));
  bool skip_nonfinite = false;
  std::string chunks, composition = "r_h_pbr", granularity = "layer";
  int num_layers = 0;
  add_dump_options(app, calibrate.input, skip_nonfinite, chunks);
  add_fit_options(app, calibrate.fit, composition, granularity, calibrate.group_size);
  app.add_option("--out", calibrate.out_dir, "Output directory for the .pt files and calibration.json");
  app.add_option("--num-layers", num_layers, "Layers to emit with --method hadamard (no input needed)");
  app.add_option("--checkpoint", calibrate.checkpoint_path, "Save accumulator state to this .h5 file while running");
  app.add_option("--save-every", calibrate.checkpoint_every_chunks, "Checkpoint every N chunks (default: per layer)");
  app.add_flag("--resume", calibrate.resume, "Continue from --checkpoint when it exists");
  app.add_flag("!--no-hash", calibrate.hash_inputs, "Do not record SHA-256 digests of the input files");

  // accumulate: a shard into a state file.
  CLI::App* accumulate = app.add_subcommand("accumulate", "Accumulate statistics of a dump (or a shard of it) into a state file");
  calib::AccumulateRequest accumulate_request;
  accumulate_request.input.threads = calibrate.input.threads;
  bool accumulate_skip = false;
  std::string accumulate_chunks, pass = "both";
  add_dump_options(*accumulate, accumulate_request.input, accumulate_skip, accumulate_chunks);
  accumulate->get_option("--from-dump")->required();
  accumulate->add_option("--method", accumulate_request.method, "Covariances the state will serve")
      ->check(CLI::IsMember({"qqt_sst", "ktk_vtv", "qqt", "sst", "ktk", "vtv"}))->capture_default_str();
  accumulate->add_option("--pass", pass, "1: first pass only (token shards); 2: sst pass with --query-state; both")
      ->check(CLI::IsMember({"1", "2", "both"}))->capture_default_str();
  accumulate->add_option("--query-state", accumulate_request.query_state_path, "Merged first-pass state (for --pass 2)");
  accumulate->add_option("--state", accumulate_request.state_path, "Output state file (.h5)")->required();

  // merge: states -> rotations.
  CLI::App* merge = app.add_subcommand("merge", "Merge shard state files and fit rotations");
  calib::MergeRequest merge_request;
  std::string merge_composition = "r_h_pbr", merge_granularity = "layer";
  merge->add_option("states", merge_request.state_paths, "State files from accumulate")->required();
  add_fit_options(*merge, merge_request.fit, merge_composition, merge_granularity, merge_request.group_size);
  merge->add_option("--out", merge_request.out_dir, "Output directory for rotations and calibration.json");
  merge->add_option("--state-out", merge_request.state_out_path, "Also write the merged state (.h5)");

  // convert: between dump layouts.
  CLI::App* convert = app.add_subcommand("convert", "Convert an activation dump between the SGLang layout and HDF5");
  std::string convert_source, convert_destination;
  convert->add_option("--from-dump", convert_source, "Source dump (directory or .h5)")->required();
  convert->add_option("--to", convert_destination, "Destination: a .h5 file or a new directory")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error) == 0 ? kExitOk : kExitUsage;
  }
  configure_logging(flags);

  try {
    if (accumulate->parsed()) {
      finish_dump_request(accumulate_request.input, accumulate_skip, accumulate_chunks, flags.quiet);
      accumulate_request.passes = pass == "1" ? calib::Passes::kFirst : pass == "2" ? calib::Passes::kSecond : calib::Passes::kBoth;
      calib::run_accumulate(accumulate_request);
    } else if (merge->parsed()) {
      if (merge_request.out_dir.empty() && merge_request.state_out_path.empty()) {
        throw CLI::ValidationError("merge", "give --out and/or --state-out");
      }
      merge_request.fit.composition = linalg::parse_composition(merge_composition);
      merge_request.fit.granularity = calib::parse_granularity(merge_granularity);
      merge_request.options_record = options_record(app, merge);
      calib::run_merge(merge_request);
    } else if (convert->parsed()) {
      ProgressBar bar(!flags.quiet);
      io::convert_dump(convert_source, convert_destination, {}, [&](const io::ConvertProgress& p) {
        bar.update(std::int64_t(p.chunks_done), std::int64_t(p.chunks_total), std::int64_t(p.chunks_done), "chunk",
                   "layer " + std::to_string(p.layer_id));
      });
    } else if (calibrate.fit.method == "hadamard") {
      if (calibrate.out_dir.empty()) throw CLI::ValidationError("--out", "required");
      if (calibrate.input.head_dim_hint <= 0) throw CLI::ValidationError("--head-dim", "required with --method hadamard");
      calib::run_hadamard(num_layers, calibrate.input.head_dim_hint, calibrate.out_dir, options_record(app, nullptr));
    } else {
      if (calibrate.input.dump_path.empty()) throw CLI::ValidationError("--from-dump", "required (or --method hadamard)");
      if (calibrate.out_dir.empty()) throw CLI::ValidationError("--out", "required");
      if (calibrate.resume && calibrate.checkpoint_path.empty()) throw CLI::ValidationError("--resume", "needs --checkpoint");
      finish_dump_request(calibrate.input, skip_nonfinite, chunks, flags.quiet);
      calibrate.fit.composition = linalg::parse_composition(composition);
      calibrate.fit.granularity = calib::parse_granularity(granularity);
      calibrate.options_record = options_record(app, nullptr);
      calib::run_calibrate(calibrate);
    }
  } catch (const CLI::Error& error) {
    std::fprintf(stderr, "oscar-calibrate: error: %s: %s\n", error.get_name().c_str(), error.what());
    return kExitUsage;
  } catch (const UsageError& error) {
    std::fprintf(stderr, "oscar-calibrate: error: %s\n", error.what());
    return kExitUsage;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "oscar-calibrate: error: %s\n", error.what());
    return kExitBadInput;
  }
  return kExitOk;
}
