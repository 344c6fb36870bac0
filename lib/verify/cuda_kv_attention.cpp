#include "verify/cuda_kv_attention.h"

#include "core/error.h"

#ifdef OSCAR_VERIFY_CUDA_RUNTIME
#include <vector>

#include "runtime/cuda/int2_cuda.h"
#include "verify/int2_kv_attention.h"
#endif

namespace oscar::verify {

#ifdef OSCAR_VERIFY_CUDA_RUNTIME

namespace {

class CudaServingKvAttention : public model::KvAttention {
 public:
  CudaServingKvAttention(const runtime::MixedCacheConfig& config, const LayerRotations& rotations, int q_heads,
                         int capacity, bool tensor_cores)
      : config_(config), rotations_(rotations), q_heads_(q_heads), caches_(rotations.key.size()) {
    config_.full_precision = runtime::FullPrecisionType::kBFloat16;  // what the GPU cache stores
    gpu_config_ = runtime::gpu::CudaCacheConfig::make(config.kv_heads, config.head_dim, capacity);
    gpu_config_.sink_tokens = config.sink_tokens;
    gpu_config_.recent_tokens = config.recent_tokens;
    gpu_config_.block_tokens = config.block_tokens;
    gpu_config_.key_int2 = config.key_int2;
    gpu_config_.value_int2 = config.value_int2;
    gpu_config_.decode_kernel =
        tensor_cores ? runtime::gpu::DecodeKernel::kTensorCores : runtime::gpu::DecodeKernel::kCudaCores;
    gpu_config_.validate();
  }

  void attend(int layer, int start, int tokens, const float* q, const float* k, const float* v, float* out) override {
    const auto index = static_cast<size_t>(layer);
    const runtime::Rotation &key = rotations_.key.at(index), &value = rotations_.value.at(index);
    if (start == 0) {
      caches_[index] = std::make_unique<runtime::gpu::CudaMixedCache>(gpu_config_, key.matrix(0), value.matrix(0),
                                                                       std::max(1, key.heads()));
      prefill_chunk_attention(config_, key, value, q, q_heads_, k, v, tokens, out);
      caches_[index]->append(k, v, tokens);
      return;
    }
    runtime::gpu::CudaMixedCache& cache = *caches_.at(index);
    const size_t row = size_t(config_.kv_heads) * size_t(config_.head_dim), q_row = size_t(q_heads_) * size_t(config_.head_dim);
    for (int t = 0; t < tokens; ++t) {
      cache.append(k + size_t(t) * row, v + size_t(t) * row, 1);
      cache.decode(q + size_t(t) * q_row, q_heads_, out + size_t(t) * q_row);
    }
  }

 private:
  runtime::MixedCacheConfig config_;
  runtime::gpu::CudaCacheConfig gpu_config_;
  const LayerRotations& rotations_;
  int q_heads_;
  std::vector<std::unique_ptr<runtime::gpu::CudaMixedCache>> caches_;
};

}  // namespace

bool cuda_int2_runtime_available() { return runtime::gpu::cuda_device_available(); }

std::unique_ptr<model::KvAttention> make_cuda_serving_attention(const runtime::MixedCacheConfig& config,
                                                                const LayerRotations& rotations, int q_heads,
                                                                int capacity, bool tensor_cores) {
  if (config.head_dim != 64 && config.head_dim != 128 && config.head_dim != 256) {
    throw UsageError("--device cuda: the CUDA INT2 runtime decodes head_dim 64, 128 or 256, the model has " +
                     std::to_string(config.head_dim) + " (use --device cpu)");
  }
  try {
    return std::make_unique<CudaServingKvAttention>(config, rotations, q_heads, capacity, tensor_cores);
  } catch (const std::invalid_argument& error) {
    throw UsageError(std::string("--device cuda: ") + error.what());
  }
}

#else

bool cuda_int2_runtime_available() { return false; }

std::unique_ptr<model::KvAttention> make_cuda_serving_attention(const runtime::MixedCacheConfig&, const LayerRotations&,
                                                                int, int, bool) {
  throw UsageError("--device cuda: this build has no CUDA INT2 runtime (rebuild with nvcc: -DOSCAR_CUDA=ON)");
}

#endif

}  // namespace oscar::verify
