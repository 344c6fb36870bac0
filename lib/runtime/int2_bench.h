// `oscar-int2 bench`: CPU quantisation throughput and decode-attention speed, INT2 against a 16-bit cache
// on the same code path (MixedCacheConfig::full_precision_only). Prints markdown tables.
#pragma once

#include <cstdint>
#include <cstdio>
#include <vector>

namespace oscar::runtime {

struct BenchOptions {
  std::vector<std::int64_t> contexts = {4096, 32768, 131072};
  int q_heads = 32, kv_heads = 8, head_dim = 128;
  int threads = 1;
  double seconds_per_case = 1.0;  ///< each figure repeats its work for at least this long
};

void run_int2_bench(const BenchOptions& options, std::FILE* out);

}  // namespace oscar::runtime
