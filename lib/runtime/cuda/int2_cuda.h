// CUDA kernels of the INT2 KV-cache runtime (reference doc §5–6), behind a plain C++ interface: this header
// needs no CUDA headers, and pointers documented as "device" are CUDA device pointers.
//
//  - quantize_rows: rotate (optional) + clip + quantize + pack, bit-identical to the CPU reference
//    (quantize_rows_reference of runtime/int2_quantize.h) — same codes, scales and zeros, byte for byte.
//  - CudaMixedCache: the mixed cache of one sequence and layer on the GPU ([sink | INT2 pages | recent
//    window], as runtime/mixed_cache.h), with the demotion kernel and split (flash-decoding) GQA attention.
//
// Every CUDA failure is thrown as std::runtime_error("<what>: <CUDA error string>"); invalid arguments as
// std::invalid_argument (non-finite input: the CPU reference's message for the first offending row).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/int2_format.h"

namespace oscar::runtime::gpu {

/// A CUDA stream (cudaStream_t) as an opaque pointer; nullptr is the default stream.
using Stream = void*;

/// True when a CUDA device can be used (driver present and at least one device); never throws.
bool cuda_device_available();
/// "NVIDIA H200 (sm_90, 132 SMs, 141 GB)", or an empty string without a device.
std::string cuda_device_description();

/// Owning device allocation (cudaMalloc); move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void* data() const { return data_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data_);
  }
  std::size_t bytes() const { return bytes_; }

  /// Synchronous copies between this buffer (at byte `offset`) and host memory.
  void upload(const void* host, std::size_t bytes, std::size_t offset = 0);
  void download(void* host, std::size_t bytes, std::size_t offset = 0) const;
  void fill_zero();

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

/// INT2 rows on the device, laid out as runtime::Int2Rows: row r's packed codes at codes + r·packed_bytes(),
/// its scales/zeros at element r·groups() + g (float32, or float16 bits for ScaleType::kFloat16).
struct DeviceInt2Rows {
  std::uint8_t* codes = nullptr;
  void* scales = nullptr;
  void* zeros = nullptr;
};

/// Largest head dimension the kernels take (one row per thread block, in shared memory).
inline constexpr int kMaxCudaHeadDim = 256;

/// Quantises `count` float32 rows (device, row r at rows + r·d) into `out` (device). Bit-identical to
/// quantize_rows_reference on the same rows. With `rotation` (device, [matrices, d, d] row-major float32),
/// row r = (token r / heads, head r % heads) is first rotated by matrix (r % heads) / (heads / matrices),
/// y[j] = Σ_i x[i]·R[i][j] in float32 with i ascending and no fused multiply-add — the order of
/// runtime::Rotation::apply — so the result equals Rotation::apply followed by the reference, bit for bit.
/// Supports d ≤ 256, both encodings, both scale types, clipping. Synchronises the stream (to report
/// non-finite values, as the reference does, with its message); other rows may already be written then.
void quantize_rows(const float* rows, std::int64_t count, const Int2Config& config, DeviceInt2Rows out,
                   const float* rotation = nullptr, int heads = 1, int matrices = 1, Stream stream = nullptr);

/// y = x·R (transpose = false, the order above) or y = x·Rᵀ (y[j] = Σ_i x[i]·R[j][i], i ascending: the order
/// of Rotation::apply_transpose) for `count` device rows of `heads` heads; matrix choice as quantize_rows;
/// rotation nullptr copies. out must not alias rows. Asynchronous.
void rotate_rows(const float* rows, std::int64_t count, int head_dim, const float* rotation, int heads, int matrices,
                 bool transpose, float* out, Stream stream = nullptr);

/// Which split kernels decode. kTensorCores (decode_mma.cu): the INT2 segment by the format's algebra on raw
/// codes (integer MMAs for the scores, half-precision MMAs for the values), the bf16 segments by bf16 MMAs, all
/// splits in one wave of one launch; it needs the same group size for keys and values when there are INT2
/// tokens (otherwise the CUDA-core kernels run). The same merge follows either. Both are within float32
/// rounding of dense attention; kCudaCores is the default until kTensorCores has been measured on a GPU.
enum class DecodeKernel : std::uint8_t { kCudaCores, kTensorCores };

/// The GPU mixed cache's configuration: the fields of runtime::MixedCacheConfig it supports (bfloat16
/// full-precision rows only), plus a fixed capacity (all device memory is allocated up front).
struct CudaCacheConfig {
  int kv_heads = 8;
  int head_dim = 128;             ///< 64, 128 or 256 for decode (quantisation takes any multiple of 4 ≤ 256)
  int sink_tokens = 64;           ///< S0, multiple of 8
  int recent_tokens = 256;        ///< W, multiple of 8; the window holds W … W+7 tokens
  int block_tokens = 64;          ///< tokens per INT2 page, positive multiple of 8
  std::int64_t capacity = 4096;   ///< most tokens the cache will hold
  Int2Config key_int2{128, 128, int2_format::kDefaultKeyClipRatio, ScaleType::kFloat32, Encoding::kMinMax};
  Int2Config value_int2{128, 128, int2_format::kDefaultValueClipRatio, ScaleType::kFloat32, Encoding::kMinMax};
  DecodeKernel decode_kernel = DecodeKernel::kCudaCores;
  /// Splits sized to this many waves of the split kernel's resident blocks (decode_plan.h; 1 unless a
  /// measurement says otherwise: bench_runtime_cuda times 1 to 4 with tensor cores).
  int decode_waves = 1;
  /// kTensorCores: the split kernel and the merge start while the kernel before each is finishing
  /// (programmatic dependent launch, sm_90; a device that refuses it gets plain launches).
  bool overlap_launches = true;

  /// Defaults for these dimensions (INT2 configs' head_dim and group size set to head_dim).
  static CudaCacheConfig make(int kv_heads, int head_dim, std::int64_t capacity);
  /// Nothing ever demoted (the sink holds everything): the 16-bit baseline on the same code path.
  static CudaCacheConfig full_precision_only(int kv_heads, int head_dim, std::int64_t capacity);
  /// Throws std::invalid_argument when inconsistent.
  void validate() const;
};

/// Mixed cache of one sequence and one layer on the GPU, in sequence order [sink | INT2 | recent]:
///  - sink and recent rows are bfloat16 of the rotated rows (k·R_K, v·R_V; float32 rotation, then rounded);
///    the recent window is a ring of W+8 slots;
///  - whenever the window reaches W+8 tokens its 8 oldest are demoted (demotion kernel: the bf16 rows widened
///    to float, quantised as quantize_rows does, written to the INT2 pages), so every token's INT2 row equals
///    quantize_rows_reference of its stored bf16 row — the same bytes as runtime::MixedKvCache;
///  - INT2 pages hold block_tokens tokens, head-major ([Hkv][block][…]) like the CPU cache, found through a
///    page table on the device;
///  - decode attention: the rotated query (q·R_K, rotate kernel), then one split kernel whose thread blocks
///    each take one KV head (all its GQA query heads) and a chunk of the INT2 segment or of the bf16 segments
///    and produce a partial (max, sum of exponentials, weighted value sum), then a merge kernel that combines
///    the partials by log-sum-exp and multiplies the output by R_Vᵀ. Not bit-exact (reduction order); within
///    float32 rounding of dense attention over [bf16 rows ‖ dequantised INT2 rows].
class CudaMixedCache {
 public:
  /// Rotations: host float32 [matrices, d, d] (row-major, acting on row vectors) or nullptr for the
  /// identity; matrices is 1 (per layer) or kv_heads (per KV head).
  CudaMixedCache(const CudaCacheConfig& config, const float* key_rotation = nullptr,
                 const float* value_rotation = nullptr, int rotation_matrices = 1);
  ~CudaMixedCache();
  CudaMixedCache(CudaMixedCache&&) noexcept;
  CudaMixedCache& operator=(CudaMixedCache&&) noexcept;

  /// Appends `tokens` tokens: k and v are [tokens, Hkv, d] float32, unrotated, in host memory. The result
  /// is exactly the state of `tokens` single appends. Throws std::length_error past the capacity and
  /// std::invalid_argument for a non-finite value reaching the INT2 format.
  void append(const float* k, const float* v, std::int64_t tokens);
  /// The same with device pointers.
  void append_device(const float* k, const float* v, std::int64_t tokens);

  /// Decode attention of one query token: q is [query_heads, d] float32 unrotated (host), out receives
  /// [query_heads, d] (host) in the original value basis (already multiplied by R_Vᵀ). query_heads must be a
  /// multiple of Hkv (GQA: query head i reads KV head i / (query_heads / Hkv)). softmax_scale ≤ 0 means
  /// 1/√d. Throws std::logic_error on an empty cache.
  void decode(const float* q, int query_heads, float* out, float softmax_scale = 0.0f);
  /// The same with device pointers; asynchronous on `stream`.
  void decode_device(const float* q, int query_heads, float* out, float softmax_scale = 0.0f,
                     Stream stream = nullptr);

  const CudaCacheConfig& config() const;
  /// Chooses the INT2 decode kernel for the following decodes (the stored cache does not depend on it).
  void set_decode_kernel(DecodeKernel kernel);
  /// CudaCacheConfig::decode_waves for the following decodes (≥ 1).
  void set_decode_waves(int waves);
  /// CudaCacheConfig::overlap_launches for the following decodes.
  void set_overlap_launches(bool overlap);
  std::int64_t size() const;
  std::int64_t sink_size() const;
  std::int64_t int2_size() const;
  std::int64_t recent_size() const;
  /// Splits of the last decode (INT2 chunks + bf16 chunks), for tests and benchmarks.
  int last_decode_splits() const;
  /// Bytes a decode reads from the cache (K and V, codes and scales or bf16 rows).
  std::int64_t decode_bytes() const;

  // ---- Copies to the host, for tests ----------------------------------------------------------------------
  /// INT2 rows in sequence order, row (i, h) = i·Hkv + h for 0 ≤ i < int2_size(): codes [n, packed_bytes],
  /// scales and zeros [n, groups] of the kind's scale type (value = false: keys, true: values).
  void download_int2(bool value, std::uint8_t* codes, void* scales, void* zeros) const;
  /// Full-precision rows in sequence order (sink, then recent oldest first) as bfloat16 bits:
  /// [sink_size() + recent_size(), Hkv, d].
  void download_full_precision(bool value, std::uint16_t* rows) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace oscar::runtime::gpu
