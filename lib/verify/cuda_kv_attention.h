// The INT2 runtime methods (naive, hadamard, oscar) on the GPU: one runtime::gpu::CudaMixedCache per layer,
// so the cache is stored and read by the bundled CUDA kernels (quantise-pack, demotion, split decode
// attention), not simulated. A call at position 0 starts a sequence: its chunk attends to itself at full
// precision (computed by the CPU runtime from the same bf16 rows the GPU cache stores) and is appended to
// the GPU cache; every later token is appended and decoded on the GPU.
//
// The GPU cache keeps full-precision rows in bfloat16 and decodes head_dim 64, 128 or 256 only. Compare with
// the CPU runtime at --dtype bfloat16 (bf16 rows there too): both store the same INT2 bytes; the decode
// differs by float32 summation order only.
#pragma once

#include <memory>

#include "model/kv_attention.h"
#include "runtime/mixed_cache.h"
#include "verify/kv_method.h"

namespace oscar::verify {

/// True when this build has the CUDA runtime (OSCAR_CUDA) and a device is present.
bool cuda_int2_runtime_available();

/// The GPU serving attention for an INT2 runtime method; tensor_cores chooses the tensor-core INT2 decode
/// kernel (runtime::gpu::DecodeKernel). Throws oscar::UsageError when the build has no CUDA runtime or the
/// geometry is one the GPU cache does not decode.
std::unique_ptr<model::KvAttention> make_cuda_serving_attention(const runtime::MixedCacheConfig& config,
                                                                const LayerRotations& rotations, int q_heads,
                                                                int capacity, bool tensor_cores = false);

}  // namespace oscar::verify
