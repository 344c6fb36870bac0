#include "calib/calibration_job.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <future>
#include <limits>

#include "calib/state_file.h"
#include "core/stopwatch.h"
#include "core/error.h"
#include "core/progress_bar.h"
#include "linalg/hadamard.h"

namespace oscar::calib {

namespace {

namespace fs = std::filesystem;

std::unique_ptr<io::ActivationDump> open_dump(const DumpRequest& request) {
  io::DumpOpenOptions options;
  options.include_chunk0 = request.include_chunk0;
  options.head_dim_hint = request.head_dim_hint;
  auto dump = io::open_activation_dump(request.dump_path, options);
  const auto& g = dump->geometry();
  spdlog::info("{}: {} layers, Hq {}, Hkv {}, d {}", request.dump_path, dump->layer_ids().size(), g.num_q_heads,
               g.num_kv_heads, g.head_dim);
  return dump;
}

/// Geometry of the whole model: a tensor-parallel dump holds 1/tp_size of the heads.
CalibrationState empty_state(const io::ActivationDump& dump, const DumpRequest& request, const StatisticsMask& mask) {
  CalibrationState state;
  state.geometry = {dump.geometry().num_q_heads * request.tp_size, dump.geometry().num_kv_heads * request.tp_size,
                    dump.geometry().head_dim};
  state.mask = mask;
  state.source = request.dump_path;
  state.dump_layout = describe_dump(dump);
  return state;
}

AccumulationOptions accumulation_options(const io::ActivationDump& dump, const DumpRequest& request) {
  if (request.tp_size < 1 || request.tp_rank < 0 || request.tp_rank >= request.tp_size) {
    throw UsageError("--tp-rank must be in [0, --tp-size)");
  }
  AccumulationOptions options;
  options.layer_ids = parse_layer_selection(request.layers, dump.layer_ids());
  if (!request.chunks.empty()) options.chunk_range = parse_id_range(request.chunks, "--chunks");
  options.kv_head_offset = request.tp_rank * dump.geometry().num_kv_heads;
  options.threads = request.threads;
  options.nonfinite = request.nonfinite;
  for (int layer_id : options.layer_ids) {
    if (selected_chunks(dump, layer_id, options).empty()) {
      throw UsageError("--chunks " + request.chunks + " selects no chunk of layer " + std::to_string(layer_id));
    }
  }
  return options;
}

/// Rotations need H and P, which need a power-of-two head dimension; say so before any work is done.
void require_composable(const io::ActivationDump& dump, const FitOptions& fit) {
  const int d = dump.geometry().head_dim;
  if (fit.composition != linalg::Composition::kPlain && !linalg::is_power_of_two(d)) {
    throw InputError(dump.path() + ": head_dim " + std::to_string(d) + " is not a power of two, which --composition " +
                     linalg::composition_name(fit.composition) + " needs (only plain works)");
  }
}

void accumulate_with_progress(const io::ActivationDump& dump, const AccumulationOptions& options,
                              CalibrationState& state, bool show_progress) {
  ProgressBar bar(show_progress);
  accumulate_dump(dump, options, state, [&](const AccumulationProgress& p) {
    bar.update(p.steps_done, p.steps_total, p.tokens_read, "tok",
               "layer " + std::to_string(p.layer_id) + " pass " + std::to_string(p.pass));
  });
}

/// A checkpoint or query state must come from the same dump, heads and method as the run using it.
CalibrationState load_matching_state(const std::string& path, const CalibrationState& fresh, bool same_mask) {
  CalibrationState loaded = load_state(path);
  require_same_source(fresh, loaded, path);
  if (same_mask && !(loaded.mask == fresh.mask)) throw InputError(path + ": made with another --method");
  if (!same_mask && !loaded.mask.query) throw InputError(path + ": holds no query statistics");
  return loaded;
}

std::int64_t tokens_of(const CalibrationState& state, int layer_id) {
  const auto found = state.heads.find({layer_id, 0});
  if (found == state.heads.end()) return 0;
  const HeadStatistics& head = found->second;
  return std::max({head.query_tokens, head.key_value_tokens, head.weighted_tokens});
}

std::int64_t skipped_in(const CalibrationState& state) {
  std::int64_t skipped = 0;
  for (const auto& entry : state.heads) skipped += entry.second.skipped_tokens;
  return skipped;
}

nlohmann::json geometry_json(const CalibrationState& state, std::size_t layers) {
  return {{"num_layers", layers},
          {"num_q_heads", state.geometry.num_q_heads},
          {"num_kv_heads", state.geometry.num_kv_heads},
          {"head_dim", state.geometry.head_dim}};
}

void log_reports(const std::vector<OutputFile>& outputs) {
  for (const auto& output : outputs) {
    for (const auto& report : output.reports) {
      spdlog::debug("{} layer {:>3}: eigenvalues [{:.4g}, {:.4g}], orthogonality error {:.1e}", output.name,
                    report.layer_id, report.min_eigenvalue, report.max_eigenvalue, report.orthogonality_error);
    }
  }
}

void write_and_log(const std::string& out_dir, const std::vector<OutputFile>& outputs, const nlohmann::json& record) {
  log_reports(outputs);
  write_outputs(out_dir, outputs, record);
  for (const auto& output : outputs) spdlog::info("wrote {}", (fs::path(out_dir) / output.name).string());
}

/// What the merged statistics' problems are blamed on: the one state file, or the first and how many more.
std::string merged_states_name(const std::vector<std::string>& paths) {
  if (paths.size() == 1) return paths.front();
  return paths.front() + " and " + std::to_string(paths.size() - 1) + " more merged state file(s)";
}

}  // namespace

std::pair<int, int> parse_id_range(const std::string& spec, const std::string& option) {
  const auto colon = spec.find(':');
  const auto parse = [&](const std::string& text) {
    std::size_t used = 0;
    int value = -1;
    try {
      value = std::stoi(text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != text.size() || value < 0) {
      throw UsageError(option + " '" + spec + "' is not A:B, A: or A (non-negative ids)");
    }
    return value;
  };
  const int first = parse(spec.substr(0, colon));
  if (colon == std::string::npos) return {first, first + 1};
  if (colon + 1 == spec.size()) return {first, std::numeric_limits<int>::max()};
  return {first, parse(spec.substr(colon + 1))};
}

std::vector<int> parse_layer_selection(const std::string& spec, const std::vector<int>& available) {
  if (spec.empty()) return available;
  const auto [first, last] = parse_id_range(spec, "--layers");
  std::vector<int> selected;
  for (int layer : available) {
    if (layer >= first && layer < last) selected.push_back(layer);
  }
  if (selected.empty()) throw UsageError("--layers " + spec + " selects no layer of the input");
  return selected;
}

void run_calibrate(const CalibrateRequest& request) {
  const Stopwatch stopwatch;
  const auto dump = open_dump(request.input);
  require_composable(*dump, request.fit);
  AccumulationOptions options = accumulation_options(*dump, request.input);
  options.checkpoint_path = request.checkpoint_path;
  options.checkpoint_every_chunks = request.checkpoint_every_chunks;
  CalibrationState state = empty_state(*dump, request.input, statistics_for(method_targets(request.fit.method)));
  if (request.resume && fs::exists(request.checkpoint_path)) {
    state = load_matching_state(request.checkpoint_path, state, true);
    spdlog::info("resuming from {}", request.checkpoint_path);
  }
  // Hash the inputs on a thread of its own while accumulating: the workers leave about a third of a core
  // idle (chunk reads are serial), and hashing afterwards added ~15% to the wall time.
  std::future<std::vector<io::FileDigest>> digests;
  if (request.hash_inputs) {
    digests = std::async(std::launch::async, [&] { return io::digest_inputs(request.input.dump_path, 1); });
  }
  accumulate_with_progress(*dump, options, state, request.input.show_progress);

  const auto outputs = fit_outputs(state, options.layer_ids, request.fit);
  RunRecord run;
  run.input_path = request.input.dump_path;
  if (digests.valid()) run.inputs = digests.get();
  run.tokens = tokens_of(state, options.layer_ids.front());
  run.prompts = state.sequences_in_layer(options.layer_ids.front());
  run.skipped_entries = skipped_in(state);
  run.group_size = request.group_size > 0 ? request.group_size : state.geometry.head_dim;
  run.options = request.options_record;
  run.geometry = geometry_json(state, options.layer_ids.size());
  run.wall_seconds = stopwatch.seconds();
  if (run.skipped_entries > 0) {
    spdlog::warn("dropped {} (token, kv head, layer) entries with non-finite values", run.skipped_entries);
  }
  write_and_log(request.out_dir, outputs, calibration_record(run, outputs));
  spdlog::info("{} tokens per layer, {} layers, {:.2f} s", run.tokens, options.layer_ids.size(), stopwatch.seconds());
}

void run_hadamard(const HadamardRequest& request) {
  std::vector<int> layer_ids;
  int head_dim = request.head_dim;
  if (!request.dump_path.empty()) {
    const auto dump = io::open_activation_dump(request.dump_path, {});
    layer_ids = dump->layer_ids();
    if (head_dim == 0) head_dim = dump->geometry().head_dim;
    if (request.num_layers > 0 && request.num_layers != int(layer_ids.size())) {
      throw UsageError("--num-layers " + std::to_string(request.num_layers) + " disagrees with the dump's " +
                       std::to_string(layer_ids.size()) + " layers");
    }
  } else {
    if (request.num_layers <= 0) throw UsageError("--method hadamard needs --num-layers > 0 (or --from-dump)");
    if (head_dim <= 0) throw UsageError("--method hadamard needs --head-dim (or --from-dump)");
    for (int i = 0; i < request.num_layers; ++i) layer_ids.push_back(i);
  }
  if (!linalg::is_power_of_two(head_dim) || head_dim > linalg::kMaxHadamardSize) {
    throw UsageError("--head-dim " + std::to_string(head_dim) + ": Hadamard needs a power of two up to 4096");
  }
  const auto outputs = hadamard_outputs(layer_ids, head_dim);
  RunRecord run;
  run.input_path = request.dump_path;
  run.options = request.options_record;
  run.group_size = head_dim;
  run.geometry = {{"num_layers", layer_ids.size()}, {"head_dim", head_dim}};
  write_and_log(request.out_dir, outputs, calibration_record(run, outputs));
}

void run_accumulate(const AccumulateRequest& request) {
  const auto dump = open_dump(request.input);
  AccumulationOptions options = accumulation_options(*dump, request.input);
  options.passes = request.passes;
  CalibrationState state = empty_state(*dump, request.input, statistics_for(method_targets(request.method)));
  CalibrationState query_reference;
  if (request.passes == Passes::kSecond) {
    if (!state.mask.weighted_value) throw UsageError("--pass 2 only exists for methods with sst");
    if (request.query_state_path.empty()) throw UsageError("--pass 2 needs --query-state MERGED.h5");
    query_reference = load_matching_state(request.query_state_path, state, false);
    options.query_reference = &query_reference;
  }
  accumulate_with_progress(*dump, options, state, request.input.show_progress);
  save_state(request.state_path, state);
  spdlog::info("wrote {}", request.state_path);
}

void run_merge(const MergeRequest& request) {
  const Stopwatch stopwatch;
  std::vector<CalibrationState> states;
  for (const auto& path : request.state_paths) states.push_back(load_state(path));
  const CalibrationState merged = merge_states(states, request.state_paths);
  const std::vector<int> layer_ids = merged.layer_ids();
  if (layer_ids.empty()) throw InputError(request.state_paths.front() + ": the states hold no statistics");

  std::vector<OutputFile> outputs;
  if (!request.out_dir.empty()) {
    const StatisticsMask needed = statistics_for(method_targets(request.fit.method));
    if ((needed.query && !merged.mask.query) || (needed.key_value && !merged.mask.key_value) ||
        (needed.weighted_value && !merged.mask.weighted_value)) {
      throw InputError(request.state_paths.front() + ": states lack the statistics of --method " + request.fit.method);
    }
    try {
      if (!request.allow_partial) merged.require_complete_dump();
      outputs = fit_outputs(merged, layer_ids, request.fit);
    } catch (const InputError& error) {  // says which layer and head; the files are the states together
      throw InputError(merged_states_name(request.state_paths) + ": " + error.what());
    }
  }
  // The merged state is staged next to its destination and renamed only once the rotations are written,
  // so a failure leaves neither behind.
  const std::string state_staging = request.state_out_path + ".staging";
  if (!request.state_out_path.empty()) save_state(state_staging, merged);
  try {
    if (!request.out_dir.empty()) {
      RunRecord run;
      run.input_path = merged.source;
      for (const auto& path : request.state_paths) run.inputs.push_back({path, fs::file_size(path), io::sha256_file(path)});
      run.tokens = tokens_of(merged, layer_ids.front());
      run.prompts = merged.sequences_in_layer(layer_ids.front());
      run.skipped_entries = skipped_in(merged);
      run.group_size = request.group_size > 0 ? request.group_size : merged.geometry.head_dim;
      run.options = request.options_record;
      run.geometry = geometry_json(merged, layer_ids.size());
      run.wall_seconds = stopwatch.seconds();
      write_and_log(request.out_dir, outputs, calibration_record(run, outputs));
    }
  } catch (...) {
    if (!request.state_out_path.empty()) fs::remove(state_staging);
    throw;
  }
  if (!request.state_out_path.empty()) {
    fs::rename(state_staging, request.state_out_path);
    spdlog::info("wrote {}", request.state_out_path);
  }
}

}  // namespace oscar::calib
