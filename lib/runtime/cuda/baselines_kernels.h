// Launchers of the baseline kernels (baselines.cu), internal to lib/runtime/cuda; plain C++. All pointers are
// device pointers; the launchers are asynchronous on the default stream and throw std::runtime_error on a
// launch error.
#pragma once

#include <cstdint>

#include "runtime/cuda/baselines_row.cuh"

namespace oscar::runtime::gpu::detail {

/// Largest d the TurboQuant kernel takes (the row lives in shared memory as float64: 32 KiB).
inline constexpr int kMaxTurboQuantDim = 4096;

/// naive-sym over `groups` consecutive groups of `group_size` elements (x and out: groups·group_size floats).
void launch_naive_sym(const float* x, std::int64_t groups, int group_size, float* out);

/// TurboQuant over `rows` rows r = token·heads + h of p.d elements; head h's signs at signs + h·p.d.
void launch_turboquant(const float* x, std::int64_t rows, int heads, const double* signs, const TurboParams& p,
                       float* out);

}  // namespace oscar::runtime::gpu::detail
