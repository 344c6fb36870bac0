// Launch parameters of the CUDA kernels (internal to lib/runtime/cuda; plain C++). All pointers are device
// pointers. The launchers are asynchronous and throw std::runtime_error on a launch error.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "runtime/cuda/quantize_row.cuh"

namespace oscar::runtime::gpu::detail {

/// Throws std::runtime_error("<what>: <CUDA error string>") unless `error` is cudaSuccess (0).
void throw_cuda_error(int error, const char* what);
inline void check_cuda(int error, const char* what) {
  if (error != 0) throw_cuda_error(error, what);
}

/// Rows r = token·heads + h of `heads` heads; rotation matrix of head h: h / heads_per_matrix.
struct RotateLaunch {
  const float* src = nullptr;  ///< [rows, d]
  std::int64_t rows = 0;
  int head_dim = 0;
  int heads = 1;
  int heads_per_matrix = 1;
  const float* rotation = nullptr;  ///< [matrices, d, d]; nullptr copies
  bool transpose = false;
  float* out_f32 = nullptr;  ///< row r at r·d, or:
  /// bf16 destination: token i goes to slot (dst_token_base + i) % dst_token_modulus (modulus 0: no wrap),
  /// row (slot·heads + h)·d.
  std::uint16_t* out_bf16 = nullptr;
  std::int64_t dst_token_base = 0;
  std::int64_t dst_token_modulus = 0;
};
void launch_rotate(const RotateLaunch& p, void* stream);

struct QuantizeLaunch {
  RowFormat format{};
  std::int64_t rows = 0;  ///< rows r = token·heads + h
  int heads = 1;
  int heads_per_matrix = 1;
  /// Source: float32 rows (row r at r·d), or bf16 rows of a ring: token i in slot
  /// (src_token_base + i) % src_token_modulus, row (slot·heads + h)·d.
  const float* src_f32 = nullptr;
  const std::uint16_t* src_bf16 = nullptr;
  std::int64_t src_token_base = 0;
  std::int64_t src_token_modulus = 1;
  const float* rotation = nullptr;  ///< [matrices, d, d] or nullptr
  bool round_to_bf16 = false;
  /// Destination: row r at index r, or (page_table set) token dst_token_base + i of head h at
  /// (page_table[t / page_tokens]·heads + h)·page_tokens + t % page_tokens.
  std::uint8_t* codes = nullptr;
  void* scales = nullptr;
  void* zeros = nullptr;
  const int* page_table = nullptr;
  int page_tokens = 0;
  std::int64_t dst_token_base = 0;
  unsigned long long* errors = nullptr;  ///< [2], see quantize_row.cuh
};
void launch_quantize(const QuantizeLaunch& p, void* stream);

/// Division of dividends n < 2^31 by a fixed divisor d ≥ 2 as a multiply-high and a shift (a 64-bit division is
/// ~70 instructions on a GPU; the decode kernels divide token indices by the page size per tile):
/// ⌊n / d⌋ = ⌊n·m / 2^shift⌋ with shift = 31 + ⌈log2 d⌉ ≥ 32 and m = ⌈2^shift / d⌉ < 2^32. Exact: m exceeds
/// 2^shift / d by less than 1, which adds less than n / 2^shift < 2^−⌈log2 d⌉ ≤ 1/d to n / d, whose fractional
/// part is at most 1 − 1/d. (d = 1 would need m = 2^31 and shift 31, below the multiply-high's 32 bits; pages
/// hold at least 8 tokens.)
struct FastDivider {
  std::uint32_t divisor = 2;
  std::uint32_t multiplier = 1u << 31;
  int shift = 32;

  static FastDivider make(std::uint32_t d) {
    if (d < 2) throw std::invalid_argument("FastDivider: divisor below 2");
    int log2_ceil = 0;
    while ((std::uint64_t(1) << log2_ceil) < d) ++log2_ceil;
    FastDivider f;
    f.divisor = d;
    f.shift = 31 + log2_ceil;
    f.multiplier = std::uint32_t(((std::uint64_t(1) << f.shift) + d - 1) / d);
    return f;
  }
  OSCAR_HD std::uint32_t quotient(std::uint32_t n) const {
#if defined(__CUDA_ARCH__)
    return __umulhi(n, multiplier) >> (shift - 32);
#else
    return std::uint32_t((std::uint64_t(n) * multiplier) >> 32) >> (shift - 32);
#endif
  }
  OSCAR_HD std::uint32_t remainder(std::uint32_t n, std::uint32_t q) const { return n - q * divisor; }
};
/// The largest dividend FastDivider takes: token indices of a decode stay below it.
inline constexpr std::int64_t kFastDividerLimit = std::int64_t(1) << 31;

inline constexpr int kDecodeWarps = 4;
inline constexpr int kDecodeThreads = kDecodeWarps * 32;  ///< threads of a split kernel's block
inline constexpr int kDecodeMaxGroupHeads = 8;  ///< query heads per block (more: several launches or grid.z)

struct DecodeLaunch {
  int head_dim = 0;
  int kv_heads = 0;
  int group_heads = 0;  ///< query heads per KV head (Hq / Hkv)
  float score_scale_log2 = 0.0f;  ///< softmax scale · log2(e)
  const float* q = nullptr;       ///< rotated queries [Hq, d]
  // INT2 segment (tokens 0 … int2_tokens−1 of the segment), pages as QuantizeLaunch's destination.
  std::int64_t int2_tokens = 0;  ///< < kFastDividerLimit
  FastDivider page_tokens;        ///< tokens per page
  const int* page_table = nullptr;
  const std::uint8_t* k_codes = nullptr;
  const std::uint8_t* v_codes = nullptr;
  const void* k_scales = nullptr;
  const void* k_zeros = nullptr;
  const void* v_scales = nullptr;
  const void* v_zeros = nullptr;
  int k_group_size = 0, v_group_size = 0;
  bool k_float16 = false, v_float16 = false;
  std::int64_t int2_chunk = 0;
  int int2_splits = 0;
  // bf16 segments: sink rows [sink_tokens, Hkv, d], then the recent ring (token i in slot
  // (ring_start + i) % ring_capacity; ring_start < ring_capacity, recent_tokens ≤ ring_capacity).
  const std::uint16_t* sink_k = nullptr;
  const std::uint16_t* sink_v = nullptr;
  std::int64_t sink_tokens = 0;
  const std::uint16_t* ring_k = nullptr;
  const std::uint16_t* ring_v = nullptr;
  std::int64_t ring_start = 0, ring_capacity = 1, recent_tokens = 0;
  std::int64_t fp_chunk = 0;
  int fp_splits = 0;
  // Partials: m and l [splits, Hq], acc [splits, Hq, d].
  float* part_m = nullptr;
  float* part_l = nullptr;
  float* part_acc = nullptr;
  // Merge: out [Hq, d] = (Σ acc·2^(m−M) / Σ l·2^(m−M)) · R_Vᵀ.
  const float* value_rotation = nullptr;  ///< [matrices, d, d] or nullptr
  int value_matrices = 1;
  float* out = nullptr;
  /// Every split on tensor cores (launch_decode_mma); else on CUDA cores (decode_split_kernel.cuh).
  bool tensor_cores = false;
  /// Tensor cores: the split kernel and the merge as programmatic dependent launches (dependent_launch.cuh),
  /// each overlapping the tail of the kernel before it.
  bool overlap_launches = false;
};
/// Calls launch(std::integral_constant<int, D>{}) for head_dim D ∈ {64, 128, 256}, the head dims the decode
/// kernels are compiled for; throws std::invalid_argument for any other.
template <class Launch>
void with_decode_head_dim(int head_dim, const Launch& launch) {
  switch (head_dim) {
    case 64: return launch(std::integral_constant<int, 64>{});
    case 128: return launch(std::integral_constant<int, 128>{});
    case 256: return launch(std::integral_constant<int, 256>{});
    default: throw std::invalid_argument("CUDA decode: head_dim must be 64, 128 or 256, got " + std::to_string(head_dim));
  }
}

/// Launches (CUDA cores) or grid.z (tensor cores) over a KV head's group of query heads: runs of ≤ 8.
inline int decode_head_launches(int group_heads) {
  return (group_heads + kDecodeMaxGroupHeads - 1) / kDecodeMaxGroupHeads;
}

/// Calls launch(head_base, heads) for each launch of the CUDA-core split kernel: ≤ kDecodeMaxGroupHeads query
/// heads of each KV head's group per launch (the tensor-core kernels take them as grid.z).
template <class Launch>
void for_each_head_launch(int group_heads, const Launch& launch) {
  for (int base = 0; base < group_heads; base += kDecodeMaxGroupHeads) {
    launch(base, group_heads - base < kDecodeMaxGroupHeads ? group_heads - base : kDecodeMaxGroupHeads);
  }
}

/// The split kernels (CUDA cores: one launch per ≤ 8 query heads of each KV head; tensor cores: one launch),
/// then the merge kernel.
void launch_decode(const DecodeLaunch& p, void* stream);
/// Whether the tensor-core kernel can take INT2 splits of this geometry: d 64, 128 or 256, the same group size
/// (d, 64 or 32) for keys and values. Its INT2 chunks are whole 16-token tiles (decode_plan.h makes them so).
bool int2_mma_decode_supported(int head_dim, int key_group_size, int value_group_size);
/// Every split (INT2, then bf16) in one launch of a tensor-core kernel (decode_mma.cu); the INT2 splits need
/// int2_mma_decode_supported. Partials as the CUDA-core kernels'.
void launch_decode_mma(const DecodeLaunch& p, void* stream);
/// How many blocks of the tensor-core split kernel for this geometry (with INT2 splits, or bf16 only) fit on one
/// multiprocessor of the current device.
int decode_mma_blocks_per_sm(int head_dim, int group_size, bool int2);
/// Likewise for the CUDA-core split kernel.
int decode_split_blocks_per_sm(int head_dim);

}  // namespace oscar::runtime::gpu::detail
