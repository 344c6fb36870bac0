#include "runtime/int2_bench.h"

#include <chrono>
#include <functional>
#include <random>

#include "runtime/decode_attention.h"
#include "runtime/int2_quantize.h"
#include "runtime/mixed_cache.h"

namespace oscar::runtime {

namespace {

using Clock = std::chrono::steady_clock;

/// Calls of `work` per second, repeating it for at least `seconds` (after one warm-up call).
double calls_per_second(const std::function<void()>& work, double seconds) {
  work();
  const auto start = Clock::now();
  std::int64_t calls = 0;
  double elapsed = 0.0;
  do {
    work();
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < seconds);
  return double(calls) / elapsed;
}

std::vector<float> random_rows(std::size_t count, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> rows(count);
  for (float& value : rows) value = normal(rng);
  return rows;
}

void bench_quantize(const BenchOptions& options, std::FILE* out) {
  const std::int64_t rows = 1 << 18;  // 32 MiB of float32 at d = 128
  const std::vector<float> input = random_rows(std::size_t(rows) * options.head_dim, 1);
  std::fprintf(out, "\n### INT2 quantisation (d %d, G = d, float32 scales, %lld rows)\n\n", options.head_dim,
               static_cast<long long>(rows));
  std::fprintf(out, "| path | clip | threads | GB/s of float32 input |\n|---|---:|---:|---:|\n");
  for (double clip : {0.0, 0.96}) {
    Int2Config config{options.head_dim, options.head_dim, clip, ScaleType::kFloat32, Encoding::kMinMax};
    std::vector<std::uint8_t> codes(std::size_t(rows) * config.packed_bytes());
    std::vector<float> scales(std::size_t(rows) * config.groups()), zeros(scales.size());
    const Int2Rows target{codes.data(), scales.data(), zeros.data()};
    const double bytes = double(input.size()) * sizeof(float);
    const double reference = calls_per_second(
        [&] { quantize_rows_reference(input.data(), rows, config, target); }, options.seconds_per_case);
    const double fast = calls_per_second(
        [&] { quantize_rows(input.data(), rows, config, target, options.threads); }, options.seconds_per_case);
    std::fprintf(out, "| reference (scalar) | %.2f | 1 | %.2f |\n", clip, reference * bytes / 1e9);
    std::fprintf(out, "| fast | %.2f | %d | %.2f |\n", clip, options.threads, fast * bytes / 1e9);
  }
}

/// A cache holding `context` random tokens.
MixedKvCache filled_cache(const MixedCacheConfig& config, std::int64_t context) {
  MixedKvCache cache(config);
  cache.reserve(int(context));
  const int chunk = 4096;
  for (std::int64_t done = 0; done < context; done += chunk) {
    const int tokens = int(std::min<std::int64_t>(chunk, context - done));
    const std::size_t count = std::size_t(tokens) * config.kv_heads * config.head_dim;
    const auto keys = random_rows(count, unsigned(2 * done + 3));
    const auto values = random_rows(count, unsigned(2 * done + 4));
    cache.prefill(keys.data(), values.data(), tokens);
  }
  return cache;
}

void bench_decode(const BenchOptions& options, std::FILE* out) {
  std::fprintf(out, "\n### Decode attention, batch 1 (Hq %d, Hkv %d, d %d, %d threads)\n\n", options.q_heads,
               options.kv_heads, options.head_dim, options.threads);
  std::fprintf(out, "| context | 16-bit cache (tok/s) | INT2 cache (tok/s) | INT2 speed-up | 16-bit MiB | INT2 MiB |\n");
  std::fprintf(out, "|---:|---:|---:|---:|---:|---:|\n");
  const std::vector<float> q = random_rows(std::size_t(options.q_heads) * options.head_dim, 7);
  std::vector<float> output(q.size());
  AttentionOptions attention;
  attention.threads = options.threads;
  for (std::int64_t context : options.contexts) {
    double rate[2] = {0, 0}, mebibytes[2] = {0, 0};
    const MixedCacheConfig configs[2] = {MixedCacheConfig::full_precision_only(options.kv_heads, options.head_dim),
                                         MixedCacheConfig::make(options.kv_heads, options.head_dim)};
    for (int i = 0; i < 2; ++i) {
      const MixedKvCache cache = filled_cache(configs[i], context);
      mebibytes[i] = double(cache.memory().used_bytes()) / (1 << 20);
      rate[i] = calls_per_second([&] { decode_attention(cache, q.data(), options.q_heads, output.data(), attention); },
                                 options.seconds_per_case);
    }
    std::fprintf(out, "| %lld | %.1f | %.1f | %.2fx | %.0f | %.0f |\n", static_cast<long long>(context), rate[0],
                 rate[1], rate[1] / rate[0], mebibytes[0], mebibytes[1]);
  }
}

}  // namespace

void run_int2_bench(const BenchOptions& options, std::FILE* out) {
  bench_quantize(options, out);
  bench_decode(options, out);
}

}  // namespace oscar::runtime
