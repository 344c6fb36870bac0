// Everything accumulated so far: the statistics of every (layer, KV head) a run has touched.
//
// One state is the result of a whole run, of a shard (a token range, a layer range, or the heads of a
// tensor-parallel rank), or a checkpoint of an unfinished run. States of disjoint shards merge into
// the state of the single run. Saved and loaded by state_file.h.
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "calib/head_statistics.h"
#include "calib/method.h"

namespace oscar::calib {

/// Global (layer id, KV head index).
using HeadKey = std::pair<int, int>;

struct ModelGeometry {
  int num_q_heads = 0;   ///< Hq of the whole model (all tensor-parallel ranks)
  int num_kv_heads = 0;  ///< Hkv of the whole model
  int head_dim = 0;
  int group_size() const { return num_kv_heads ? num_q_heads / num_kv_heads : 0; }
  bool operator==(const ModelGeometry& o) const {
    return num_q_heads == o.num_q_heads && num_kv_heads == o.num_kv_heads && head_dim == o.head_dim;
  }
};

/// One chunk of the dump a state was accumulated from. The list of them identifies the dump: shards,
/// checkpoints and query states must come from dumps with the same list.
struct DumpChunk {
  int layer_id = 0;
  int chunk_id = 0;
  std::int64_t tokens = 0;
  std::int64_t sequences = 0;  ///< entries of seq_lens (prompts); 0 when the dump has none
  bool operator==(const DumpChunk& o) const {
    return layer_id == o.layer_id && chunk_id == o.chunk_id && tokens == o.tokens && sequences == o.sequences;
  }
};

struct CalibrationState {
  ModelGeometry geometry;
  StatisticsMask mask;
  std::string source;                  ///< what was read (dump path), for the record
  std::vector<DumpChunk> dump_layout;  ///< every chunk of the source dump, by layer then chunk id
  std::map<HeadKey, HeadStatistics> heads;

  /// The statistics of (layer, kv_head), created as zeros when absent.
  HeadStatistics& head(int layer_id, int kv_head);
  /// Ascending layer ids present.
  std::vector<int> layer_ids() const;
  /// Throws InputError unless every KV head of the layer is present.
  void require_complete_layer(int layer_id) const;
  /// Throws InputError unless the statistics cover every chunk of every layer of dump_layout, in every
  /// pass the mask needs: what a merge must check before it fits rotations for a whole model.
  void require_complete_dump() const;
  /// Throws InputError("layer_L/kv_head_H: ...") unless every chunk a head lists as accumulated is a chunk
  /// of its layer in dump_layout: what a state read back from a file must satisfy.
  void require_chunks_in_layout() const;
  /// The chunk ids of each layer in dump_layout.
  std::map<int, std::set<int>> chunks_by_layer() const;
  /// Sequences (prompts) in the chunks of the layer that the first pass of its KV head 0 covered.
  std::int64_t sequences_in_layer(int layer_id) const;
};

/// Throws InputError("<what>: ...") unless `other` has the same geometry and dump layout as `state`.
void require_same_source(const CalibrationState& state, const CalibrationState& other, const std::string& what);

/// Sum of shard states. Geometry, mask and dump layout must agree; a (layer, head) in several states must
/// have disjoint chunk sets. Throws InputError naming `names[i]` of the offending state.
CalibrationState merge_states(const std::vector<CalibrationState>& states, const std::vector<std::string>& names);

}  // namespace oscar::calib
