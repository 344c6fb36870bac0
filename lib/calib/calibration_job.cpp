#include "calib/calibration_job.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include "calib/state_file.h"
#include "core/error.h"
#include "core/progress_bar.h"

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
  return state;
}

AccumulationOptions accumulation_options(const io::ActivationDump& dump, const DumpRequest& request) {
  if (request.tp_size < 1 || request.tp_rank < 0 || request.tp_rank >= request.tp_size) {
    throw UsageError("--tp-rank must be in [0, --tp-size)");
  }
  AccumulationOptions options;
  options.layer_ids = parse_layer_selection(request.layers, dump.layer_ids());
  options.chunk_range = request.chunk_range;
  options.kv_head_offset = request.tp_rank * dump.geometry().num_kv_heads;
  options.threads = request.threads;
  options.nonfinite = request.nonfinite;
  return options;
}

void accumulate_with_progress(const io::ActivationDump& dump, const AccumulationOptions& options,
                              CalibrationState& state, bool show_progress) {
  ProgressBar bar(show_progress);
  accumulate_dump(dump, options, state, [&](const AccumulationProgress& p) {
    bar.update(p.steps_done, p.steps_total, p.tokens_read, "tok",
               "layer " + std::to_string(p.layer_id) + " pass " + std::to_string(p.pass));
  });
}

std::int64_t sequences_in(const io::ActivationDump& dump, int layer_id, const AccumulationOptions& options) {
  std::int64_t sequences = 0;
  for (int chunk_id : selected_chunks(dump, layer_id, options)) sequences += std::int64_t(dump.seq_lens(layer_id, chunk_id).size());
  return sequences;
}

std::int64_t tokens_of(const CalibrationState& state, int layer_id) {
  const auto found = state.heads.find({layer_id, 0});
  if (found == state.heads.end()) return 0;
  const HeadStatistics& head = found->second;
  return std::max({head.query_tokens, head.key_value_tokens, head.weighted_tokens}) + 0;
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

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::vector<int> parse_layer_selection(const std::string& spec, const std::vector<int>& available) {
  if (spec.empty()) return available;
  int first = 0, last = 0;
  try {
    const auto colon = spec.find(':');
    std::size_t used = 0;
    first = std::stoi(spec.substr(0, colon), &used);
    if (used != (colon == std::string::npos ? spec.size() : colon)) throw std::invalid_argument(spec);
    if (colon == std::string::npos) {
      last = first + 1;
    } else if (colon + 1 == spec.size()) {
      last = available.empty() ? first : available.back() + 1;
    } else {
      last = std::stoi(spec.substr(colon + 1), &used);
      if (used != spec.size() - colon - 1) throw std::invalid_argument(spec);
    }
  } catch (const std::exception&) {
    throw UsageError("--layers '" + spec + "' is not A:B, A: or A");
  }
  std::vector<int> selected;
  for (int layer : available) {
    if (layer >= first && layer < last) selected.push_back(layer);
  }
  if (selected.empty()) throw UsageError("--layers " + spec + " selects no layer of the input");
  return selected;
}

void run_calibrate(const CalibrateRequest& request) {
  const auto start = std::chrono::steady_clock::now();
  const auto dump = open_dump(request.input);
  AccumulationOptions options = accumulation_options(*dump, request.input);
  options.checkpoint_path = request.checkpoint_path;
  options.checkpoint_every_chunks = request.checkpoint_every_chunks;
  const StatisticsMask mask = statistics_for(method_targets(request.fit.method));
  CalibrationState state = empty_state(*dump, request.input, mask);
  if (request.resume && !request.checkpoint_path.empty() && fs::exists(request.checkpoint_path)) {
    state = load_state(request.checkpoint_path);
    if (!(state.geometry == empty_state(*dump, request.input, mask).geometry) || !(state.mask == mask)) {
      throw InputError(request.checkpoint_path + ": checkpoint was made with other heads or another --method");
    }
    spdlog::info("resuming from {}", request.checkpoint_path);
  }
  accumulate_with_progress(*dump, options, state, request.input.show_progress);

  const auto outputs = fit_outputs(state, options.layer_ids, request.fit);
  RunRecord run;
  run.input_path = request.input.dump_path;
  if (request.hash_inputs) run.inputs = io::digest_inputs(request.input.dump_path, request.input.threads);
  run.tokens = tokens_of(state, options.layer_ids.front());
  run.prompts = sequences_in(*dump, options.layer_ids.front(), options);
  run.skipped_tokens = skipped_in(state);
  run.group_size = request.group_size > 0 ? request.group_size : state.geometry.head_dim;
  run.options = request.options_record;
  run.geometry = geometry_json(state, options.layer_ids.size());
  run.wall_seconds = seconds_since(start);
  if (run.skipped_tokens > 0) spdlog::warn("skipped {} (token, head) entries with non-finite values", run.skipped_tokens);
  write_and_log(request.out_dir, outputs, calibration_record(run, outputs));
  spdlog::info("{} tokens per layer, {} layers, {:.2f} s", run.tokens, options.layer_ids.size(), seconds_since(start));
}

void run_hadamard(int num_layers, int head_dim, const std::string& out_dir, const nlohmann::json& options_record) {
  if (num_layers <= 0) throw UsageError("--method hadamard needs --num-layers > 0");
  std::vector<int> layer_ids(static_cast<std::size_t>(num_layers));
  for (int i = 0; i < num_layers; ++i) layer_ids[std::size_t(i)] = i;
  std::vector<OutputFile> outputs;
  try {
    outputs = hadamard_outputs(layer_ids, head_dim);
  } catch (const std::invalid_argument& error) {
    throw UsageError(std::string("--head-dim: ") + error.what());
  }
  RunRecord run;
  run.options = options_record;
  run.group_size = head_dim;
  run.geometry = {{"num_layers", num_layers}, {"head_dim", head_dim}};
  write_and_log(out_dir, outputs, calibration_record(run, outputs));
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
    query_reference = load_state(request.query_state_path);
    options.query_reference = &query_reference;
  }
  accumulate_with_progress(*dump, options, state, request.input.show_progress);
  save_state(request.state_path, state);
  spdlog::info("wrote {}", request.state_path);
}

void run_merge(const MergeRequest& request) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<CalibrationState> states;
  for (const auto& path : request.state_paths) states.push_back(load_state(path));
  const CalibrationState merged = merge_states(states, request.state_paths);
  std::vector<OutputFile> outputs;
  std::vector<int> layer_ids = merged.layer_ids();
  if (!request.out_dir.empty()) {
    for (const FittingTarget& target : method_targets(request.fit.method)) {
      const StatisticsMask needed = statistics_for({target});
      if ((needed.query && !merged.mask.query) || (needed.key_value && !merged.mask.key_value) ||
          (needed.weighted_value && !merged.mask.weighted_value)) {
        throw InputError(request.state_paths.front() + ": states lack the statistics of --method " + request.fit.method);
      }
    }
    outputs = fit_outputs(merged, layer_ids, request.fit);
  }
  if (!request.state_out_path.empty()) {
    save_state(request.state_out_path, merged);
    spdlog::info("wrote {}", request.state_out_path);
  }
  if (request.out_dir.empty()) return;
  RunRecord run;
  run.input_path = merged.source;
  for (const auto& path : request.state_paths) run.inputs.push_back({path, fs::file_size(path), io::sha256_file(path)});
  run.tokens = tokens_of(merged, layer_ids.front());
  run.skipped_tokens = skipped_in(merged);
  run.group_size = request.group_size > 0 ? request.group_size : merged.geometry.head_dim;
  run.options = request.options_record;
  run.geometry = geometry_json(merged, layer_ids.size());
  run.wall_seconds = seconds_since(start);
  write_and_log(request.out_dir, outputs, calibration_record(run, outputs));
}

}  // namespace oscar::calib
