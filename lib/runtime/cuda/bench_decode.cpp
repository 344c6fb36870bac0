// Decode benchmark of the CUDA runtime: INT2 mixed cache against a bf16 cache on the same code path
// (CudaCacheConfig::full_precision_only), with either decode kernel family (CUDA cores, tensor cores), Hq 32,
// Hkv 8, d 128, batch 1, plus quantisation throughput. Speed-ups are bf16 time over INT2 time within a family;
// GB/s are the bytes each decode reads (tensor cores) over its time. "tc-cc diff" is the largest |tensor cores −
// CUDA cores| of the INT2 outputs over the largest |output|: they must agree to float32 rounding. Then the
// tensor-core INT2 decode at the longest context with its splits sized to 1 … 4 waves of resident blocks, and
// with programmatic dependent launches against plain ones.
// Usage: bench_runtime_cuda [iterations] [context ...]   (default 50; 4096 32768 100000 131072)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "runtime/cuda/int2_cuda.h"

using namespace oscar::runtime;
using namespace oscar::runtime::gpu;

namespace {

constexpr int kQueryHeads = 32, kKvHeads = 8, kHeadDim = 128;
constexpr std::int64_t kChunk = 4096;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

/// Orthonormal Sylvester-Hadamard matrix (d a power of two): a rotation that is cheap to build.
std::vector<float> hadamard(int d) {
  std::vector<float> h(std::size_t(d) * d);
  const float scale = 1.0f / std::sqrt(float(d));
  for (int i = 0; i < d; ++i) {
    for (int j = 0; j < d; ++j) h[std::size_t(i) * d + j] = (__builtin_popcount(unsigned(i & j)) & 1) ? -scale : scale;
  }
  return h;
}

/// Mean milliseconds of one decode over `iterations`, after a warm-up.
double time_decode(CudaMixedCache& cache, const float* q, float* out, int iterations) {
  for (int i = 0; i < 3; ++i) cache.decode_device(q, kQueryHeads, out);
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "event");
  check(cudaEventCreate(&stop), "event");
  check(cudaEventRecord(start), "event");
  for (int i = 0; i < iterations; ++i) cache.decode_device(q, kQueryHeads, out);
  check(cudaEventRecord(stop), "event");
  check(cudaEventSynchronize(stop), "decode");
  float ms = 0.0f;
  check(cudaEventElapsedTime(&ms, start, stop), "event");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return double(ms) / iterations;
}

void fill(CudaMixedCache& cache, std::int64_t context, const DeviceBuffer& k, const DeviceBuffer& v) {
  for (std::int64_t done = 0; done < context; done += kChunk) {
    cache.append_device(k.as<float>(), v.as<float>(), std::min(kChunk, context - done));
  }
  check(cudaDeviceSynchronize(), "fill");
}

}  // namespace

int main(int argc, char** argv) {
  if (!cuda_device_available()) {
    std::printf("no CUDA device: benchmark skipped\n");
    return 0;
  }
  int iterations = argc > 1 ? std::atoi(argv[1]) : 50;
  std::vector<std::int64_t> contexts;
  for (int i = 2; i < argc; ++i) contexts.push_back(std::atoll(argv[i]));
  if (contexts.empty()) contexts = {4096, 32768, 100000, 131072};

  int device = 0, mem_clock_khz = 0, bus_bits = 0;
  check(cudaGetDevice(&device), "device");
  check(cudaDeviceGetAttribute(&mem_clock_khz, cudaDevAttrMemoryClockRate, device), "attribute");
  check(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device), "attribute");
  const double peak_gbs = 2.0 * mem_clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;  // double data rate
  std::printf("device: %s, peak memory bandwidth %.0f GB/s (from clock %d kHz x %d bits x 2)\n",
              cuda_device_description().c_str(), peak_gbs, mem_clock_khz, bus_bits);

  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const std::size_t chunk_floats = std::size_t(kChunk) * kKvHeads * kHeadDim;
  std::vector<float> host(chunk_floats);
  for (float& x : host) x = normal(rng);
  DeviceBuffer k(chunk_floats * sizeof(float)), v(chunk_floats * sizeof(float));
  k.upload(host.data(), host.size() * sizeof(float));
  for (float& x : host) x = normal(rng);
  v.upload(host.data(), host.size() * sizeof(float));
  std::vector<float> hq(std::size_t(kQueryHeads) * kHeadDim);
  for (float& x : hq) x = normal(rng);
  DeviceBuffer q(hq.size() * sizeof(float)), out(hq.size() * sizeof(float));
  q.upload(hq.data(), hq.size() * sizeof(float));
  const std::vector<float> rotation = hadamard(kHeadDim);

  // Quantisation throughput (rotated rows in, float32 scales, clip 0.96), on 1M rows.
  {
    const std::int64_t rows = std::int64_t(kChunk) * kKvHeads;
    Int2Config config{kHeadDim, kHeadDim, int2_format::kDefaultKeyClipRatio, ScaleType::kFloat32, Encoding::kMinMax};
    DeviceBuffer codes(std::size_t(rows) * config.packed_bytes()), scales(std::size_t(rows) * 4), zeros(std::size_t(rows) * 4);
    DeviceInt2Rows dst{codes.as<std::uint8_t>(), scales.data(), zeros.data()};
    quantize_rows(k.as<float>(), rows, config, dst);
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    const int reps = 10;
    cudaEventRecord(start);
    for (int i = 0; i < reps; ++i) quantize_rows(k.as<float>(), rows, config, dst);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start, stop);
    const double seconds = ms / 1e3 / reps;
    std::printf("quantize (clip, no rotation): %lld rows of d=%d in %.3f ms: %.1f GB/s of float32 input\n",
                static_cast<long long>(rows), kHeadDim, seconds * 1e3, rows * kHeadDim * 4.0 / seconds / 1e9);
  }

  std::printf("\nHq %d, Hkv %d, d %d, batch 1, %d iterations; INT2: S0 64, W 256, clip 0.96/0.92, float32 scales\n",
              kQueryHeads, kKvHeads, kHeadDim, iterations);
  std::printf("%8s | %9s %9s %7s | %9s %9s %7s | %8s %6s %8s %6s | %10s | %s\n", "context", "int2 us", "bf16 us",
              "speedup", "int2 us", "bf16 us", "speedup", "int2GB/s", "peak", "bf16GB/s", "peak", "tc-cc diff",
              "int2 splits cc/tc");
  std::printf("%8s | %-27s | %-27s | %-31s |\n", "", "CUDA cores", "tensor cores", "tensor cores");
  std::vector<float> out_cc(hq.size()), out_tc(hq.size());
  for (std::int64_t context : contexts) {
    CudaMixedCache int2(CudaCacheConfig::make(kKvHeads, kHeadDim, context), rotation.data(), rotation.data(), 1);
    fill(int2, context, k, v);
    CudaMixedCache bf16(CudaCacheConfig::full_precision_only(kKvHeads, kHeadDim, context), rotation.data(),
                        rotation.data(), 1);
    fill(bf16, context, k, v);
    const double int2_cc = time_decode(int2, q.as<float>(), out.as<float>(), iterations);
    const int splits_cc = int2.last_decode_splits();
    out.download(out_cc.data(), out_cc.size() * sizeof(float));
    const double bf16_cc = time_decode(bf16, q.as<float>(), out.as<float>(), iterations);
    int2.set_decode_kernel(DecodeKernel::kTensorCores);
    bf16.set_decode_kernel(DecodeKernel::kTensorCores);
    const double int2_tc = time_decode(int2, q.as<float>(), out.as<float>(), iterations);
    const int splits_tc = int2.last_decode_splits();
    out.download(out_tc.data(), out_tc.size() * sizeof(float));
    const double bf16_tc = time_decode(bf16, q.as<float>(), out.as<float>(), iterations);
    double diff = 0.0, largest = 0.0;
    for (std::size_t i = 0; i < out_cc.size(); ++i) {
      diff = std::max(diff, double(std::fabs(out_tc[i] - out_cc[i])));
      largest = std::max(largest, double(std::fabs(out_cc[i])));
    }
    const double int2_gbs = int2.decode_bytes() / (int2_tc * 1e-3) / 1e9, bf16_gbs = bf16.decode_bytes() / (bf16_tc * 1e-3) / 1e9;
    std::printf("%8lld | %9.1f %9.1f %6.2fx | %9.1f %9.1f %6.2fx | %8.0f %5.0f%% %8.0f %5.0f%% | %10.1e | %d/%d\n",
                static_cast<long long>(context), int2_cc * 1e3, bf16_cc * 1e3, bf16_cc / int2_cc, int2_tc * 1e3,
                bf16_tc * 1e3, bf16_tc / int2_tc, int2_gbs, 100.0 * int2_gbs / peak_gbs, bf16_gbs,
                100.0 * bf16_gbs / peak_gbs, largest > 0.0 ? diff / largest : diff, splits_cc, splits_tc);
  }

  // The tensor-core split sizing: INT2 time with the splits sized to 1 … 4 waves of resident blocks (1 is the
  // default, decode_plan.h), at the longest context.
  const std::int64_t context = contexts.back();
  CudaMixedCache int2(CudaCacheConfig::make(kKvHeads, kHeadDim, context), rotation.data(), rotation.data(), 1);
  fill(int2, context, k, v);
  int2.set_decode_kernel(DecodeKernel::kTensorCores);
  std::printf("\ntensor cores, INT2 at %lld tokens, splits sized to waves of resident blocks:\n",
              static_cast<long long>(context));
  for (int waves = 1; waves <= 4; ++waves) {
    int2.set_decode_waves(waves);
    const double ms = time_decode(int2, q.as<float>(), out.as<float>(), iterations);
    std::printf("  %d wave%s: %3d splits per KV head, %7.1f us, %5.0f GB/s\n", waves, waves > 1 ? "s" : " ",
                int2.last_decode_splits(), ms * 1e3, int2.decode_bytes() / (ms * 1e-3) / 1e9);
  }
  // Programmatic dependent launches (CudaCacheConfig::overlap_launches, the default) against plain ones.
  int2.set_decode_waves(1);
  for (bool overlap : {true, false}) {
    int2.set_overlap_launches(overlap);
    const double ms = time_decode(int2, q.as<float>(), out.as<float>(), iterations);
    std::printf("  1 wave, %s launches: %7.1f us\n", overlap ? "overlapping" : "plain      ", ms * 1e3);
  }
  return 0;
}
