// Model calibration: the capture sink that turns a forward's q/k/v into accumulator updates (and optionally
// dump chunks), and the job around it. The only translation unit of this area that includes LibTorch headers.
#include "pipeline/model_calibration.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <filesystem>
#include <memory>

#include "calib/head_statistics.h"
#include "core/stopwatch.h"
#include "core/error.h"
#include "core/host_tensor.h"
#include "core/progress_bar.h"
#include "io/file_digest.h"
#include "io/hdf5_dump.h"
#include "pipeline/capture_accumulator.h"
#include "linalg/composition.h"
#include "linalg/matrix.h"
#include "model/generation.h"
#include "model/model_loader.h"

namespace oscar::pipeline {

namespace {

namespace fs = std::filesystem;
using calib::CalibrationState;

/// Sequences longer than this are cut when --seq-len is left to the model: a Qwen3 context of 40960 tokens
/// would make one calibration sequence cost minutes and gigabytes of attention scores.
constexpr int kDefaultMaxSeqLen = 4096;
/// Captured chunks waiting for the background accumulator at most (a Qwen3-8B layer of a 4096-token
/// sequence is 100 MB): bounds what overlapping capture with the forward costs in memory.
constexpr std::size_t kMaxPendingCaptureBytes = std::size_t(512) << 20;

/// A float32 copy of a capture tensor in host memory: the accumulators read HostTensor, and the capture
/// tensors are only valid during the callback (and may be bfloat16 or on a GPU).
HostTensor to_host_tensor(const at::Tensor& tensor) {
  const at::Tensor host = tensor.to(at::kCPU, at::kFloat).contiguous();
  HostTensor out;
  out.dtype = DType::kFloat32;
  out.shape.assign(host.sizes().begin(), host.sizes().end());
  out.bytes.resize(out.nbytes());
  std::memcpy(out.bytes.data(), host.data_ptr<float>(), out.bytes.size());
  return out;
}

/// Hands every layer of every sequence of a batch (chunk id = first_chunk + row) to the background
/// accumulator, as host float32 copies: the capture tensors are only valid during the call.
class AccumulatingSink : public model::CaptureSink {
 public:
  AccumulatingSink(CaptureAccumulator& accumulator, bool needs_queries)
      : accumulator_(accumulator), needs_queries_(needs_queries) {}
  void set_first_chunk(int chunk_id) { first_chunk_ = chunk_id; }

  void on_layer(int layer, int sequence, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) override {
    CapturedChunk chunk;
    chunk.layer = layer;
    chunk.chunk_id = first_chunk_ + sequence;
    if (needs_queries_) chunk.query = to_host_tensor(q);
    chunk.key = to_host_tensor(k);
    chunk.value = to_host_tensor(v);
    accumulator_.push(std::move(chunk));
  }

 private:
  CaptureAccumulator& accumulator_;
  bool needs_queries_;
  int first_chunk_ = 1;
};

CalibrationState empty_state(const model::ModelConfig& config, const std::string& method) {
  CalibrationState state;
  state.geometry = {config.n_heads, config.n_kv_heads, config.head_dim};
  state.mask = calib::statistics_for(calib::method_targets(method));
  return state;
}

/// One DumpChunk per (layer, sequence), by layer then chunk id, as a dump's layout would list them: code that
/// counts prompts or checks completeness (sequences_in_layer, require_complete_dump) reads it.
std::vector<calib::DumpChunk> sequence_layout(int num_layers, const std::vector<std::vector<int>>& sequences) {
  std::vector<calib::DumpChunk> layout;
  for (int layer = 0; layer < num_layers; ++layer) {
    for (std::size_t i = 0; i < sequences.size(); ++i) {
      layout.push_back({layer, int(i) + 1, std::int64_t(sequences[i].size()), 1});
    }
  }
  return layout;
}

/// Batches of consecutive sequences: [first, first + count).
template <typename Visit>
void for_each_batch(std::size_t total, int batch_size, Visit visit) {
  for (std::size_t first = 0; first < total; first += std::size_t(batch_size)) {
    visit(first, std::min(std::size_t(batch_size), total - first));
  }
}

void run_pass(model::Decoder& decoder, const std::vector<std::vector<int>>& sequences, int batch_size,
              AccumulatingSink& sink, const std::function<void(std::int64_t)>& on_batch_tokens) {
  for_each_batch(sequences.size(), batch_size, [&](std::size_t first, std::size_t count) {
    const std::vector<std::vector<int>> batch(sequences.begin() + std::ptrdiff_t(first),
                                              sequences.begin() + std::ptrdiff_t(first + count));
    decoder.reset(int(count));
    sink.set_first_chunk(int(first) + 1);
    decoder.forward_batch(batch, &sink);
    std::int64_t tokens = 0;
    for (const auto& sequence : batch) tokens += std::int64_t(sequence.size());
    if (on_batch_tokens) on_batch_tokens(tokens);
  });
}

/// sst weights every token by kᵀ·C̄_Q·k with the C̄_Q of the whole calibration set, so it is fixed here,
/// between the passes, exactly as the dump path does.
void fix_query_weights(CalibrationState& state) {
  for (auto& [key, head] : state.heads) head.weighting_query_covariance = calib::query_covariance(head, state.geometry.group_size());
}

std::unique_ptr<io::Hdf5DumpWriter> open_dump(const std::string& path, const model::ModelConfig& config,
                                              const model::DecoderOptions& options) {
  if (path.empty()) return nullptr;
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ignored;  // a failure shows up as the writer's own "cannot create" error
  if (!parent.empty()) fs::create_directories(parent, ignored);
  io::Hdf5DumpMetadata metadata;
  metadata.model = model::architecture_name(config.architecture);
  metadata.num_layers = config.n_layers;
  metadata.geometry = {config.n_heads, config.n_kv_heads, config.head_dim};
  metadata.source_dtype = dtype_name(options.dtype);
  return std::make_unique<io::Hdf5DumpWriter>(path, metadata);
}

void require_composable(int head_dim, const calib::FitOptions& fit) {
  if (fit.composition != linalg::Composition::kPlain && !linalg::is_power_of_two(head_dim)) {
    throw InputError("head_dim " + std::to_string(head_dim) + " is not a power of two, which --composition " +
                     linalg::composition_name(fit.composition) + " needs (only plain works)");
  }
}

/// Appends greedy continuations to every sequence (the reference calibrates on traces the model produces
/// itself), then trims the total back to the token budget. Capture happens afterwards by prefilling the
/// whole sequence, so both passes see identical activations for prompt and generated tokens alike.
void append_generations(model::Decoder& decoder, std::vector<CalibrationSequence>& sequences,
                        const std::vector<int>& stops, const ModelCalibrationRequest& request, ProgressBar& bar) {
  model::GenerationOptions options;
  options.stop_tokens = stops;
  std::size_t done = 0;
  for_each_batch(sequences.size(), request.batch_size, [&](std::size_t first, std::size_t count) {
    std::vector<std::vector<int>> prompts;
    int room = request.generate_tokens;
    for (std::size_t i = first; i < first + count; ++i) {
      prompts.push_back(sequences[i].tokens);
      room = std::min(room, decoder.config().max_seq_len - int(sequences[i].tokens.size()));
    }
    options.max_new_tokens = std::max(room, 0);
    const auto generated = model::generate(decoder, prompts, options);
    for (std::size_t i = 0; i < count; ++i) {
      auto& tokens = sequences[first + i].tokens;
      tokens.insert(tokens.end(), generated[i].begin(), generated[i].end());
    }
    done += count;
    bar.update(std::int64_t(done), std::int64_t(sequences.size()), std::int64_t(done), "prompt", "generating");
  });
  std::int64_t total = 0;
  std::size_t kept = 0;
  for (; kept < sequences.size() && total < request.budget.max_tokens; ++kept) {
    auto& tokens = sequences[kept].tokens;
    tokens.resize(std::size_t(std::min<std::int64_t>(std::int64_t(tokens.size()), request.budget.max_tokens - total)));
    total += std::int64_t(tokens.size());
  }
  sequences.resize(kept);
}

/// The model's description plus how it was run.
nlohmann::json model_identity(const model::LoadedModel& loaded, const model::DecoderOptions& options) {
  nlohmann::json identity = model::describe_model(loaded);
  identity["dtype"] = dtype_name(options.dtype);
  identity["device"] = options.device;
  return identity;
}

std::vector<std::vector<int>> token_lists(const std::vector<CalibrationSequence>& sequences) {
  std::vector<std::vector<int>> lists;
  for (const auto& sequence : sequences) lists.push_back(sequence.tokens);
  return lists;
}

}  // namespace

calib::CalibrationState accumulate_model_statistics(model::Decoder& decoder, const std::vector<std::vector<int>>& sequences,
                                                    const std::string& method, int batch_size, const std::string& dump_path,
                                                    const std::function<void(std::int64_t, std::int64_t)>& on_tokens) {
  if (batch_size <= 0) throw UsageError("--batch must be positive");
  const model::ModelConfig& config = decoder.config();
  CalibrationState state = empty_state(config, method);
  state.dump_layout = sequence_layout(config.n_layers, sequences);
  std::int64_t per_pass = 0, done = 0;
  for (const auto& sequence : sequences) per_pass += std::int64_t(sequence.size());
  const std::int64_t total = per_pass * (state.mask.weighted_value ? 2 : 1);
  const auto count = [&](std::int64_t tokens) {
    done += tokens;
    if (on_tokens) on_tokens(done, total);
  };

  auto dump = open_dump(dump_path, config, decoder.options());
  CaptureAccumulator accumulator(state, dump.get(), kMaxPendingCaptureBytes);
  AccumulatingSink first(accumulator, /*needs_queries=*/true);
  run_pass(decoder, sequences, batch_size, first, count);
  accumulator.drain();
  if (dump) dump->finish();
  if (state.mask.weighted_value) {
    // The second pass needs K and V again. Re-running the forward costs one more forward but no memory, and
    // the forward is deterministic (same weights, same tokens, same batches, same kernels), so it sees
    // exactly the activations of the first pass; keeping K/V instead would grow with tokens × layers × heads
    // (Qwen3-8B, 20k tokens: 2.9 GB in float32).
    fix_query_weights(state);
    accumulator.start_pass(CapturePass::kSecond);
    AccumulatingSink second(accumulator, /*needs_queries=*/false);
    run_pass(decoder, sequences, batch_size, second, count);
    accumulator.drain();
  }
  state.require_complete_dump();
  return state;
}

std::string run_model_calibration(const ModelCalibrationRequest& request) {
  const Stopwatch stopwatch;
  const model::LoadedModel loaded = model::load_model(request.model_path, request.tokenizer_path);
  if (!loaded.tokenizer) throw InputError(request.model_path + ": no tokenizer found (give --tokenizer)");
  const model::ModelConfig& config = loaded.config;
  require_composable(config.head_dim, request.fit);
  model::Decoder decoder(config, loaded.weights, request.decoder);
  spdlog::info("{}: {} ({}), {} layers, {} query / {} KV heads, head_dim {}, {} on {}", request.model_path,
               model::architecture_name(config.architecture), model::model_format_name(loaded.format), config.n_layers,
               config.n_heads, config.n_kv_heads, config.head_dim, dtype_name(request.decoder.dtype), request.decoder.device);

  SequenceBudget budget = request.budget;
  const int context = config.max_seq_len;
  if (budget.seq_len == 0) budget.seq_len = std::min(context, kDefaultMaxSeqLen);
  if (budget.seq_len > context) {
    throw UsageError("--seq-len " + std::to_string(budget.seq_len) + " exceeds the model's context of " + std::to_string(context));
  }
  const model::ChatTemplate chat_template = model::resolve_chat_template(request.chat_template, *loaded.tokenizer);
  std::vector<CalibrationSequence> sequences =
      build_calibration_sequences(*loaded.tokenizer, chat_template, request.data_paths, budget);
  ProgressBar bar(request.progress);
  if (request.generate_tokens > 0) {
    append_generations(decoder, sequences, model::generation_stop_tokens(*loaded.tokenizer, chat_template), request, bar);
  }
  spdlog::info("{} sequences, {} tokens, chat template {}", sequences.size(), total_tokens(sequences),
               model::chat_template_name(chat_template));

  ProgressBar capture_bar(request.progress);
  CalibrationState state = accumulate_model_statistics(
      decoder, token_lists(sequences), request.fit.method, request.batch_size, request.dump_path,
      [&](std::int64_t done, std::int64_t total) { capture_bar.update(done, total, done, "tok", "capturing"); });
  state.source = request.model_path;
  const std::vector<int> layer_ids = state.layer_ids();
  const auto outputs = calib::fit_outputs(state, layer_ids, request.fit);

  calib::RunRecord run;
  run.input_path = request.model_path;
  if (request.hash_inputs) {
    std::vector<std::string> files = loaded.files;
    files.insert(files.end(), request.data_paths.begin(), request.data_paths.end());
    run.inputs = io::digest_paths(files);
  }
  run.tokens = total_tokens(sequences);
  run.prompts = std::int64_t(sequences.size());
  run.group_size = request.group_size > 0 ? request.group_size : config.head_dim;
  run.options = request.options_record;
  run.geometry = {{"num_layers", layer_ids.size()},
                  {"num_q_heads", state.geometry.num_q_heads},
                  {"num_kv_heads", state.geometry.num_kv_heads},
                  {"head_dim", state.geometry.head_dim}};
  run.model = model_identity(loaded, request.decoder);
  run.model["chat_template"] = model::chat_template_name(chat_template);
  run.wall_seconds = stopwatch.seconds();
  const std::string tag_dir = (fs::path(request.out_dir) / calib::calibration_tag(run.tokens, run.prompts, run.group_size)).string();
  calib::write_outputs(tag_dir, outputs, calib::calibration_record(run, outputs));
  for (const auto& output : outputs) spdlog::info("wrote {}", (fs::path(tag_dir) / output.name).string());
  spdlog::info("{} tokens per layer, {} layers, {:.2f} s", run.tokens, layer_ids.size(), stopwatch.seconds());
  return tag_dir;
}

}  // namespace oscar::pipeline
