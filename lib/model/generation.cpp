#include "model/generation.h"

#include <algorithm>

namespace oscar::model {

std::vector<std::vector<int>> generate(Decoder& decoder, const std::vector<std::vector<int>>& prompts,
                                       const GenerationOptions& options, CaptureSink* sink) {
  const size_t batch = prompts.size();
  std::vector<std::vector<int>> generated(batch);
  if (batch == 0 || options.max_new_tokens <= 0) return generated;
  std::vector<TokenSampler> samplers;
  for (size_t b = 0; b < batch; ++b) {
    SamplingOptions sampling = options.sampling;
    sampling.seed += b;
    samplers.emplace_back(sampling);
  }
  decoder.reset(static_cast<int>(batch));
  std::vector<std::vector<float>> logits = decoder.forward_batch(prompts, sink);
  std::vector<bool> finished(batch, false);
  const int context = decoder.config().max_seq_len;
  while (true) {
    std::vector<std::vector<int>> step(batch);
    for (size_t b = 0; b < batch; ++b) {
      if (finished[b]) continue;
      const int next = samplers[b].next(logits[b]);
      generated[b].push_back(next);
      const bool stopped = std::find(options.stop_tokens.begin(), options.stop_tokens.end(), next) != options.stop_tokens.end();
      finished[b] = stopped || static_cast<int>(generated[b].size()) >= options.max_new_tokens ||
                    decoder.position(static_cast<int>(b)) >= context;
      if (!finished[b]) step[b] = {next};
    }
    if (std::all_of(finished.begin(), finished.end(), [](bool f) { return f; })) break;
    const auto step_logits = decoder.forward_batch(step, sink);
    for (size_t b = 0; b < batch; ++b) {
      if (!step[b].empty()) logits[b] = step_logits[b];
    }
  }
  return generated;
}

}  // namespace oscar::model
