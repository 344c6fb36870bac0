// Host side of the CUDA baselines (baselines_cuda.h): the CPU classes' argument checks, the TurboQuant signs and
// codebook from the CPU code, uploads, launches, downloads.
#include "runtime/cuda/baselines_cuda.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/baseline_quantizers.h"
#include "runtime/cuda/baselines_kernels.h"
#include "runtime/cuda/int2_cuda.h"

namespace oscar::runtime::gpu {

double CudaNaiveSymmetricQuantizer::reconstruct(const float* rows, int tokens, int heads, int d, float* out) const {
  runtime::detail::check_rows(rows, tokens, heads, d, out, "naive-sym");
  const int g = runtime::detail::resolve_group(group_size_, d, "naive-sym");
  const std::size_t groups = std::size_t(tokens) * std::size_t(heads) * std::size_t(d / g);
  const double bits = double(groups) * (2.0 * g + 16.0);
  if (groups == 0) return bits;
  const std::size_t bytes = groups * std::size_t(g) * sizeof(float);
  DeviceBuffer input(bytes), output(bytes);
  input.upload(rows, bytes);
  detail::launch_naive_sym(input.as<float>(), std::int64_t(groups), g, output.as<float>());
  output.download(out, bytes);
  return bits;
}

CudaTurboQuantizer::CudaTurboQuantizer(int bits, std::uint64_t seed) : codebook_(bits), seed_(seed) {}

double CudaTurboQuantizer::reconstruct(const float* rows, int tokens, int heads, int d, float* out) const {
  runtime::detail::check_rows(rows, tokens, heads, d, out, "turboquant");
  // The CPU class's rotations, one per head (this also rejects d not a power of two, with its message).
  std::vector<double> signs(std::size_t(heads) * std::size_t(d));
  for (int h = 0; h < heads; ++h) {
    const RandomizedHadamard pi(d, head_seed(seed_, h));
    std::copy(pi.signs().begin(), pi.signs().end(), signs.begin() + std::ptrdiff_t(h) * d);
  }
  if (d > detail::kMaxTurboQuantDim) {
    throw std::invalid_argument("turboquant (CUDA): d must be at most " + std::to_string(detail::kMaxTurboQuantDim) +
                                ", got " + std::to_string(d));
  }
  const std::size_t count = std::size_t(tokens) * std::size_t(heads);
  const double bits = double(count) * (double(codebook_.bits()) * d + 16.0);
  if (count == 0) return bits;

  const std::vector<double>& thresholds = codebook_.thresholds();
  const std::vector<double>& levels = codebook_.level_values();
  std::vector<double> table(thresholds);
  table.insert(table.end(), levels.begin(), levels.end());
  DeviceBuffer table_buffer(table.size() * sizeof(double)), sign_buffer(signs.size() * sizeof(double));
  table_buffer.upload(table.data(), table.size() * sizeof(double));
  sign_buffer.upload(signs.data(), signs.size() * sizeof(double));
  const std::size_t bytes = count * std::size_t(d) * sizeof(float);
  DeviceBuffer input(bytes), output(bytes);
  input.upload(rows, bytes);

  detail::TurboParams p;
  p.d = d;
  p.root_d = std::sqrt(double(d));             // turboquant_row's root_d
  p.inv_root_d = 1.0 / std::sqrt(double(d));  // walsh_hadamard's norm
  p.thresholds = table_buffer.as<double>();
  p.levels = table_buffer.as<double>() + thresholds.size();
  p.threshold_count = int(thresholds.size());
  detail::launch_turboquant(input.as<float>(), std::int64_t(count), heads, sign_buffer.as<double>(), p,
                            output.as<float>());
  output.download(out, bytes);
  return bits;
}

std::vector<std::string> cuda_kv_quantizer_names() { return {"naive-sym", "turboquant"}; }

std::unique_ptr<KvQuantizer> make_cuda_kv_quantizer(const std::string& name, KvKind kind,
                                                    const QuantizerOptions& options) {
  if (options.group_size < 0) throw std::invalid_argument("quantizer group size must be >= 0 (0: d)");
  if (name == "naive-sym") return std::make_unique<CudaNaiveSymmetricQuantizer>(options.group_size);
  if (name == "turboquant") return std::make_unique<CudaTurboQuantizer>(options.turboquant_bits, options.seed);
  const std::vector<std::string> known = kv_quantizer_names();
  if (std::find(known.begin(), known.end(), name) != known.end()) return nullptr;  // no CUDA version
  (void)make_kv_quantizer(name, kind, options);  // throws make_kv_quantizer's unknown-name error
  throw std::invalid_argument("unknown KV quantizer '" + name + "'");
}

}  // namespace oscar::runtime::gpu
