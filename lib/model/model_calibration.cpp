// Model calibration: the capture sink that turns a forward's q/k/v into accumulator updates, and the job
// around it. The only translation unit of this feature that includes LibTorch headers.
#include "model/model_calibration.h"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "calib/chunk_accumulation.h"
#include "calib/head_statistics.h"
#include "core/error.h"
#include "core/host_tensor.h"
#include "io/file_digest.h"
#include "linalg/composition.h"
#include "linalg/matrix.h"
#include "model/llama2c_file.h"

namespace oscar::model {

namespace {

namespace fs = std::filesystem;
using calib::CalibrationState;

enum class Pass { kFirst, kSecond };

/// A float32 copy of a capture tensor in host memory: the accumulators read HostTensor, and the capture
/// tensors are only valid during the callback.
HostTensor to_host_tensor(const at::Tensor& tensor) {
  const at::Tensor host = tensor.to(at::kCPU, at::kFloat).contiguous();
  HostTensor out;
  out.dtype = DType::kFloat32;
  out.shape.assign(host.sizes().begin(), host.sizes().end());
  out.bytes.resize(out.nbytes());
  std::memcpy(out.bytes.data(), host.data_ptr<float>(), out.bytes.size());
  return out;
}

/// Feeds every layer of one sequence's forward into the state as chunk `chunk_id` of that layer.
class AccumulatingSink : public CaptureSink {
 public:
  AccumulatingSink(CalibrationState& state, Pass pass) : state_(state), pass_(pass) {}
  void set_chunk(int chunk_id) { chunk_id_ = chunk_id; }

  void on_layer(int layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) override {
    const HostTensor query = to_host_tensor(q), key = to_host_tensor(k), value = to_host_tensor(v);
    const calib::ChunkTensors chunk{layer, chunk_id_, &query, &key, &value};
    const int group_size = state_.geometry.group_size();
    // Model activations are finite unless the model is broken, which should fail loudly rather than be skipped.
    for (int h = 0; h < state_.geometry.num_kv_heads; ++h) {
      calib::HeadStatistics& head = state_.head(layer, h);
      if (pass_ == Pass::kFirst) {
        calib::accumulate_first_pass(head, chunk, h, group_size, state_.mask, calib::NonfinitePolicy::kError);
      } else {
        calib::accumulate_second_pass(head, chunk, h, calib::NonfinitePolicy::kError);
      }
    }
  }

 private:
  CalibrationState& state_;
  Pass pass_;
  int chunk_id_ = 0;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

CalibrationState empty_state(const ModelConfig& config, const std::string& method, const std::string& source) {
  CalibrationState state;
  state.geometry = {config.n_heads, config.n_kv_heads, config.head_dim()};
  state.mask = calib::statistics_for(calib::method_targets(method));
  state.source = source;
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

void run_pass(Decoder& decoder, const std::vector<std::vector<int>>& sequences, CalibrationState& state, Pass pass) {
  AccumulatingSink sink(state, pass);
  for (std::size_t i = 0; i < sequences.size(); ++i) {
    decoder.reset();
    sink.set_chunk(int(i) + 1);
    decoder.forward(sequences[i], &sink);
  }
}

/// sst weights every token by kᵀ·C̄_Q·k with the C̄_Q of the whole calibration set, so it is fixed here,
/// between the passes, exactly as the dump path does.
void fix_query_weights(CalibrationState& state) {
  for (auto& [key, head] : state.heads) head.weighting_query_covariance = calib::query_covariance(head, state.geometry.group_size());
}

void require_composable(int head_dim, const calib::FitOptions& fit) {
  if (fit.composition != linalg::Composition::kPlain && !linalg::is_power_of_two(head_dim)) {
    throw InputError("head_dim " + std::to_string(head_dim) + " is not a power of two, which --composition " +
                     linalg::composition_name(fit.composition) + " needs (only plain works)");
  }
}

std::vector<io::FileDigest> digest_files(const ModelCalibrationRequest& request) {
  std::vector<io::FileDigest> digests;
  std::vector<std::string> paths{request.model_path, request.tokenizer_path};
  paths.insert(paths.end(), request.data_paths.begin(), request.data_paths.end());
  for (const std::string& path : paths) {
    for (io::FileDigest& digest : io::digest_inputs(path, 1)) digests.push_back(std::move(digest));
  }
  return digests;
}

std::int64_t total_tokens(const std::vector<std::vector<int>>& sequences) {
  std::int64_t tokens = 0;
  for (const auto& sequence : sequences) tokens += std::int64_t(sequence.size());
  return tokens;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::vector<std::vector<int>> calibration_sequences(const Llama2cTokenizer& tokenizer,
                                                    const std::vector<std::string>& data_paths,
                                                    std::int64_t max_tokens, int seq_len) {
  if (seq_len <= 0) throw UsageError("--seq-len must be positive");
  if (max_tokens <= 0) throw UsageError("--tokens must be positive");
  std::vector<std::vector<int>> sequences;
  std::int64_t taken = 0;
  for (const std::string& path : data_paths) {
    if (taken >= max_tokens) break;  // later files are not even tokenized (encoding is quadratic in length)
    const std::vector<int> ids = tokenizer.encode(read_text(path), true, false);
    for (std::size_t first = 0; first < ids.size() && taken < max_tokens; first += std::size_t(seq_len)) {
      const std::int64_t length = std::min({std::int64_t(seq_len), std::int64_t(ids.size() - first), max_tokens - taken});
      sequences.emplace_back(ids.begin() + std::ptrdiff_t(first), ids.begin() + std::ptrdiff_t(first + std::size_t(length)));
      taken += length;
    }
  }
  if (sequences.empty()) throw InputError("the --data files hold no tokens");
  return sequences;
}

calib::CalibrationState accumulate_model_statistics(Decoder& decoder, const std::vector<std::vector<int>>& sequences,
                                                    const std::string& method) {
  const ModelConfig& config = decoder.config();
  CalibrationState state = empty_state(config, method, "");
  state.dump_layout = sequence_layout(config.n_layers, sequences);
  run_pass(decoder, sequences, state, Pass::kFirst);
  if (state.mask.weighted_value) {
    // The second pass needs K and V again. Re-running the forward costs one more forward but no memory, and
    // the forward is deterministic (same weights, same tokens, same kernels), so it sees exactly the
    // activations of the first pass; keeping K/V instead would grow with --tokens × layers × heads.
    fix_query_weights(state);
    run_pass(decoder, sequences, state, Pass::kSecond);
  }
  state.require_complete_dump();
  return state;
}

void run_model_calibration(const ModelCalibrationRequest& request) {
  const auto start = std::chrono::steady_clock::now();
  Decoder decoder(load_llama2c(request.model_path));
  const ModelConfig config = decoder.config();
  require_composable(config.head_dim(), request.fit);
  if (request.seq_len > config.seq_len) {
    throw UsageError("--seq-len " + std::to_string(request.seq_len) + " exceeds the model's context of " +
                     std::to_string(config.seq_len));
  }
  const Llama2cTokenizer tokenizer(request.tokenizer_path, config.vocab_size);
  const auto sequences = calibration_sequences(tokenizer, request.data_paths, request.max_tokens, request.seq_len);
  spdlog::info("{} sequences, {} tokens", sequences.size(), total_tokens(sequences));

  CalibrationState state = accumulate_model_statistics(decoder, sequences, request.fit.method);
  state.source = request.model_path;
  const std::vector<int> layer_ids = state.layer_ids();
  const auto outputs = calib::fit_outputs(state, layer_ids, request.fit);

  calib::RunRecord run;
  run.input_path = request.model_path;
  if (request.hash_inputs) run.inputs = digest_files(request);
  run.tokens = total_tokens(sequences);
  run.prompts = std::int64_t(sequences.size());
  run.group_size = request.group_size > 0 ? request.group_size : config.head_dim();
  run.options = request.options_record;
  run.geometry = {{"num_layers", layer_ids.size()},
                  {"num_q_heads", state.geometry.num_q_heads},
                  {"num_kv_heads", state.geometry.num_kv_heads},
                  {"head_dim", state.geometry.head_dim}};
  run.wall_seconds = seconds_since(start);
  calib::write_outputs(request.out_dir, outputs, calib::calibration_record(run, outputs));
  for (const auto& output : outputs) spdlog::info("wrote {}", (fs::path(request.out_dir) / output.name).string());
  spdlog::info("{} tokens per layer, {} layers, {:.2f} s", run.tokens, layer_ids.size(), seconds_since(start));
}

}  // namespace oscar::model
