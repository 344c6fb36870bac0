#include "calib/dump_accumulation.h"

#include "calib/state_file.h"
#include "core/error.h"
#include "core/parallel_for.h"

namespace oscar::calib {

namespace {

using io::Projection;

/// Per-run bookkeeping shared by both passes: counts finished (chunk, pass) steps, reports progress and
/// saves a checkpoint every options.checkpoint_every_chunks computed steps.
class StepCounter {
 public:
  StepCounter(const io::ActivationDump& dump, const AccumulationOptions& options, CalibrationState& state,
              const ProgressCallback& progress)
      : options_(options), state_(state), progress_(progress) {
    const int passes = (options.passes == Passes::kBoth && state.mask.weighted_value) ? 2 : 1;
    for (int layer_id : options.layer_ids) status_.steps_total += passes * std::int64_t(selected_chunks(dump, layer_id, options).size());
  }

  void finish_step(int layer_id, int pass, std::int64_t tokens, bool computed) {
    ++status_.steps_done;
    status_.tokens_read += tokens;
    status_.layer_id = layer_id;
    status_.pass = pass;
    if (computed && options_.checkpoint_every_chunks > 0 && ++since_checkpoint_ >= options_.checkpoint_every_chunks) {
      checkpoint();
    }
    if (progress_) progress_(status_);
  }

  void checkpoint() {
    if (options_.checkpoint_path.empty()) return;
    save_state(options_.checkpoint_path, state_);
    since_checkpoint_ = 0;
  }

 private:
  const AccumulationOptions& options_;
  CalibrationState& state_;
  const ProgressCallback& progress_;
  AccumulationProgress status_;
  int since_checkpoint_ = 0;
};

/// The statistics of the dump's local KV heads of one layer, in local head order.
std::vector<HeadStatistics*> layer_heads(CalibrationState& state, int layer_id, int local_kv_heads, int offset) {
  std::vector<HeadStatistics*> heads;
  for (int h = 0; h < local_kv_heads; ++h) heads.push_back(&state.head(layer_id, offset + h));
  return heads;
}

bool all_have(const std::vector<HeadStatistics*>& heads, int chunk_id, bool second_pass) {
  for (const HeadStatistics* head : heads) {
    const auto& done = second_pass ? head->second_pass_chunks : head->first_pass_chunks;
    if (!done.count(chunk_id)) return false;
  }
  return true;
}

/// Runs body per local head in parallel, prefixing non-finite errors with the dump path.
void for_each_head(const io::ActivationDump& dump, const std::vector<HeadStatistics*>& heads, int threads,
                   const std::function<void(HeadStatistics&, int)>& body) {
  try {
    parallel_for(int(heads.size()), threads, [&](int h) { body(*heads[std::size_t(h)], h); });
  } catch (const NonfiniteError& error) {
    throw NonfiniteError(dump.path() + ": " + error.what());
  }
}

/// Chunks of the layer not yet in every head's statistics for this pass; reports the others as done.
std::vector<int> pending_chunks(const io::ActivationDump& dump, const AccumulationOptions& options, int layer_id,
                                const std::vector<HeadStatistics*>& heads, int pass, StepCounter& steps) {
  std::vector<int> pending;
  for (int chunk_id : selected_chunks(dump, layer_id, options)) {
    if (all_have(heads, chunk_id, pass == 2)) {
      steps.finish_step(layer_id, pass, 0, false);
    } else {
      pending.push_back(chunk_id);
    }
  }
  return pending;
}

// Chunks are read and consumed one at a time. Reading the next chunk on a background thread was measured
// slower: the two chunks evict each other from the last-level cache.

void first_pass(const io::ActivationDump& dump, const AccumulationOptions& options, CalibrationState& state,
                int layer_id, StepCounter& steps) {
  const auto& geometry = dump.geometry();
  const int group_size = geometry.num_q_heads / geometry.num_kv_heads;
  const auto heads = layer_heads(state, layer_id, geometry.num_kv_heads, options.kv_head_offset);
  const StatisticsMask& mask = state.mask;
  for (int chunk_id : pending_chunks(dump, options, layer_id, heads, 1, steps)) {
    HostTensor query, key, value;
    ChunkTensors chunk{layer_id, chunk_id, nullptr, nullptr, nullptr};
    if (mask.query) chunk.query = &(query = dump.read(layer_id, chunk_id, Projection::kQuery));
    if (mask.key_value) {
      chunk.key = &(key = dump.read(layer_id, chunk_id, Projection::kKey));
      chunk.value = &(value = dump.read(layer_id, chunk_id, Projection::kValue));
    }
    for_each_head(dump, heads, options.threads, [&](HeadStatistics& head, int h) {
      if (!head.first_pass_chunks.count(chunk_id)) accumulate_first_pass(head, chunk, h, group_size, mask, options.nonfinite);
    });
    steps.finish_step(layer_id, 1, dump.chunk_tokens(layer_id, chunk_id), true);
  }
}

/// Fixes C̄_Q of every head before the second pass; a resumed pass must find the same matrix.
void prepare_second_pass(const AccumulationOptions& options, int layer_id,
                         const std::vector<HeadStatistics*>& heads, int group_size) {
  for (std::size_t h = 0; h < heads.size(); ++h) {
    const int kv_head = options.kv_head_offset + int(h);
    const HeadStatistics* source = heads[h];
    if (options.query_reference) {
      const auto found = options.query_reference->heads.find({layer_id, kv_head});
      if (found == options.query_reference->heads.end()) {
        throw InputError("--query-state has no statistics for layer " + std::to_string(layer_id) + " kv head " +
                         std::to_string(kv_head));
      }
      source = &found->second;
      heads[h]->skipped_query_tokens.insert(source->skipped_query_tokens.begin(), source->skipped_query_tokens.end());
    }
    const Matrix weighting = query_covariance(*source, group_size);
    if (!heads[h]->second_pass_chunks.empty() && heads[h]->weighting_query_covariance != weighting) {
      throw InputError("layer " + std::to_string(layer_id) + ": the checkpoint's second pass used a different "
                       "query covariance; delete the checkpoint and start again");
    }
    heads[h]->weighting_query_covariance = weighting;
  }
}

void second_pass(const io::ActivationDump& dump, const AccumulationOptions& options, CalibrationState& state,
                 int layer_id, StepCounter& steps) {
  const auto& geometry = dump.geometry();
  const auto heads = layer_heads(state, layer_id, geometry.num_kv_heads, options.kv_head_offset);
  prepare_second_pass(options, layer_id, heads, geometry.num_q_heads / geometry.num_kv_heads);
  for (int chunk_id : pending_chunks(dump, options, layer_id, heads, 2, steps)) {
    const HostTensor key = dump.read(layer_id, chunk_id, Projection::kKey);
    const HostTensor value = dump.read(layer_id, chunk_id, Projection::kValue);
    const ChunkTensors chunk{layer_id, chunk_id, nullptr, &key, &value};
    for_each_head(dump, heads, options.threads, [&](HeadStatistics& head, int h) {
      if (!head.second_pass_chunks.count(chunk_id)) accumulate_second_pass(head, chunk, h, options.nonfinite);
    });
    steps.finish_step(layer_id, 2, dump.chunk_tokens(layer_id, chunk_id), true);
  }
}

}  // namespace

std::vector<DumpChunk> describe_dump(const io::ActivationDump& dump) {
  std::vector<DumpChunk> layout;
  for (int layer_id : dump.layer_ids()) {
    for (int chunk_id : dump.chunk_ids(layer_id)) {
      layout.push_back({layer_id, chunk_id, dump.chunk_tokens(layer_id, chunk_id),
                        std::int64_t(dump.seq_lens(layer_id, chunk_id).size())});
    }
  }
  return layout;
}

std::vector<int> selected_chunks(const io::ActivationDump& dump, int layer_id, const AccumulationOptions& options) {
  std::vector<int> chunks;
  for (int chunk_id : dump.chunk_ids(layer_id)) {
    if (!options.chunk_range || (chunk_id >= options.chunk_range->first && chunk_id < options.chunk_range->second)) {
      chunks.push_back(chunk_id);
    }
  }
  return chunks;
}

void accumulate_dump(const io::ActivationDump& dump, const AccumulationOptions& options, CalibrationState& state,
                     const ProgressCallback& progress) {
  StepCounter steps(dump, options, state, progress);
  const bool run_first = options.passes != Passes::kSecond;
  const bool run_second = state.mask.weighted_value && options.passes != Passes::kFirst;
  for (int layer_id : options.layer_ids) {
    if (run_first) first_pass(dump, options, state, layer_id, steps);
    if (run_second) second_pass(dump, options, state, layer_id, steps);
    steps.checkpoint();
  }
}

}  // namespace oscar::calib
