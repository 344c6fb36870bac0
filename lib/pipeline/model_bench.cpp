#include "pipeline/model_bench.h"

#include <random>
#include <vector>

#include "core/error.h"
#include "core/stopwatch.h"
#include "pipeline/model_calibration.h"

namespace oscar::pipeline {
namespace {

std::vector<std::vector<int>> random_sequences(const ModelBenchOptions& options, int vocab_size) {
  std::mt19937_64 generator(options.seed);
  std::vector<std::vector<int>> sequences(std::size_t(options.sequences), std::vector<int>(std::size_t(options.seq_len)));
  for (auto& sequence : sequences) {
    for (int& id : sequence) id = int(generator() % std::uint64_t(vocab_size));
  }
  return sequences;
}

/// One forward per batch over all sequences, no capture.
double time_plain_forward(model::Decoder& decoder, const std::vector<std::vector<int>>& sequences, int batch_size) {
  const Stopwatch stopwatch;
  for (std::size_t first = 0; first < sequences.size(); first += std::size_t(batch_size)) {
    const std::size_t count = std::min(std::size_t(batch_size), sequences.size() - first);
    decoder.reset(int(count));
    decoder.forward_batch({sequences.begin() + std::ptrdiff_t(first), sequences.begin() + std::ptrdiff_t(first + count)});
  }
  return stopwatch.seconds();
}

/// Decode steps after a prefill of `prompt`, shortened when needed so that prompt + steps fit the context.
double decode_tokens_per_second(model::Decoder& decoder, std::vector<int> prompt, int steps, int& context) {
  const int room = decoder.config().max_seq_len - steps;
  if (room < 1) throw UsageError("--decode-tokens " + std::to_string(steps) + " does not fit the model's context");
  if (int(prompt.size()) > room) prompt.resize(std::size_t(room));
  context = int(prompt.size());
  decoder.reset(1);
  std::vector<float> logits = decoder.forward(prompt);
  const Stopwatch stopwatch;
  for (int step = 0; step < steps; ++step) logits = decoder.forward({int(step % decoder.config().vocab_size)});
  return steps / stopwatch.seconds();
}

}  // namespace

ModelBenchResult bench_model(model::Decoder& decoder, const ModelBenchOptions& options) {
  const auto sequences = random_sequences(options, decoder.config().vocab_size);
  ModelBenchResult result;
  time_plain_forward(decoder, {sequences.front()}, 1);  // warm-up: allocator, thread pool, caches
  result.plain_forward_seconds = time_plain_forward(decoder, sequences, options.batch_size);
  result.prefill_tokens_per_second = double(options.sequences) * options.seq_len / result.plain_forward_seconds;
  const Stopwatch stopwatch;
  accumulate_model_statistics(decoder, sequences, "qqt_sst", options.batch_size);
  result.calibration_seconds = stopwatch.seconds();
  result.decode_tokens_per_second = decode_tokens_per_second(decoder, sequences.front(), options.decode_tokens, result.decode_context);
  return result;
}

}  // namespace oscar::pipeline
