// Host side of the CUDA runtime: device queries, buffers, argument checks, the mixed cache's bookkeeping.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/cuda/decode_plan.h"
#include "runtime/cuda/int2_cuda.h"
#include "runtime/cuda/kernels.h"

namespace oscar::runtime::gpu {

namespace detail {

void throw_cuda_error(int error, const char* what) {
  const cudaError_t e = static_cast<cudaError_t>(error);
  throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

}  // namespace detail

using detail::check_cuda;

namespace {

constexpr int kStep = 8;  // tokens demoted at once

// ---- Format checks and parameters, mirroring int2_format.cpp (this library does not link oscar_runtime) ----

int clip_index_of(double ratio, int head_dim) {
  if (ratio <= 0.0) return -1;
  const int index = static_cast<int>(ratio * head_dim);
  return index < 0 ? 0 : (index > head_dim - 1 ? head_dim - 1 : index);
}

void validate_format(const Int2Config& c, const char* what) {
  const int d = c.head_dim, g = c.group_size;
  if (d <= 0 || d % 4 != 0 || d > kMaxCudaHeadDim) {
    throw std::invalid_argument(std::string(what) + ": head_dim must be a positive multiple of 4 up to " +
                                std::to_string(kMaxCudaHeadDim) + " on the GPU, got " + std::to_string(d));
  }
  if (!(g == d || g == 64 || g == 32) || g > d || d % g != 0) {
    throw std::invalid_argument(std::string(what) + ": group size must be head_dim, 64 or 32 and divide head_dim, got " +
                                std::to_string(g));
  }
  if (c.scale_type != ScaleType::kFloat32 && c.scale_type != ScaleType::kFloat16) {
    throw std::invalid_argument(std::string(what) + ": scale type must be float32 or float16");
  }
  if (c.encoding != Encoding::kMinMax && c.encoding != Encoding::kLloydMax) {
    throw std::invalid_argument(std::string(what) + ": encoding must be min-max or Lloyd-Max");
  }
}

detail::RowFormat row_format(const Int2Config& c) {
  detail::RowFormat f{};
  f.head_dim = c.head_dim;
  f.group_size = c.group_size;
  f.groups = c.head_dim / c.group_size;
  f.clip_index = clip_index_of(c.clip_ratio, c.head_dim);
  f.sort_size = 1;
  while (f.sort_size < c.head_dim) f.sort_size <<= 1;
  f.float16_scales = c.scale_type == ScaleType::kFloat16;
  f.lloyd_max = c.encoding == Encoding::kLloydMax;
  return f;
}

std::size_t scale_bytes(const Int2Config& c) { return c.scale_type == ScaleType::kFloat16 ? 2 : 4; }

/// Error slots of the quantize kernel ([2] unsigned long long on the device).
class ErrorSlots {
 public:
  ErrorSlots() : buffer_(2 * sizeof(unsigned long long)) { reset(nullptr); }
  unsigned long long* data() const { return buffer_.as<unsigned long long>(); }
  void reset(cudaStream_t stream) {
    check_cuda(cudaMemsetAsync(buffer_.data(), 0xff, buffer_.bytes(), stream), "INT2 error flags reset");
  }
  /// Synchronises the stream, then throws the CPU reference's error for the first offending row, if any.
  /// `row_name(r)` turns a kernel row number into the row number the caller's user knows.
  template <typename RowName>
  void throw_if_set(cudaStream_t stream, RowName row_name) const {
    unsigned long long slots[2];
    check_cuda(cudaMemcpyAsync(slots, buffer_.data(), sizeof slots, cudaMemcpyDeviceToHost, stream),
               "INT2 error flags download");
    check_cuda(cudaStreamSynchronize(stream), "INT2 quantize");
    const unsigned long long none = detail::kNoError;
    if (slots[0] == none && slots[1] == none) return;
    const unsigned long long bad_row = slots[0] == none ? ~0ull : slots[0] >> 10;
    const unsigned long long overflow_row = slots[1] == none ? ~0ull : slots[1] >> 4;
    if (bad_row <= overflow_row) {  // the reference checks finiteness before the Lloyd-Max statistics
      const int element = int((slots[0] >> 2) & 0xffu);
      const char* names[3] = {"NaN", "+inf", "-inf"};
      throw std::invalid_argument("INT2 quantize: row " + std::to_string(row_name(bad_row)) + ", element " +
                                  std::to_string(element) + " is " + names[std::min<int>(2, int(slots[0] & 3u))] +
                                  " (input must be finite)");
    }
    throw std::invalid_argument("INT2 quantize: row " + std::to_string(row_name(overflow_row)) + ", group " +
                                std::to_string(int(slots[1] & 15u)) +
                                ": values too large for the Lloyd-Max encoding (its mean, standard deviation, "
                                "scale or zero-point overflow float32)");
  }

 private:
  DeviceBuffer buffer_;
};

cudaStream_t as_stream(Stream s) { return static_cast<cudaStream_t>(s); }

void check_rotation_layout(int heads, int matrices, const char* what) {
  if (heads <= 0 || matrices <= 0 || heads % matrices != 0) {
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(matrices) + " rotation matrices for " +
                                std::to_string(heads) + " heads (heads must be a multiple)");
  }
}

}  // namespace

// ---- Device queries and buffers ------------------------------------------------------------------------------

bool cuda_device_available() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state of the failed query
    return false;
  }
  return count > 0;
}

std::string cuda_device_description() {
  if (!cuda_device_available()) return {};
  int device = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) return {};
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
         std::to_string(prop.multiProcessorCount) + " SMs, " +
         std::to_string(static_cast<long long>(prop.totalGlobalMem >> 30)) + " GiB)";
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes > 0) check_cuda(cudaMalloc(&data_, bytes), "cudaMalloc");
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) cudaFree(data_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept : data_(other.data_), bytes_(other.bytes_) {
  other.data_ = nullptr;
  other.bytes_ = 0;
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) cudaFree(data_);
    data_ = other.data_;
    bytes_ = other.bytes_;
    other.data_ = nullptr;
    other.bytes_ = 0;
  }
  return *this;
}

void DeviceBuffer::upload(const void* host, std::size_t bytes, std::size_t offset) {
  if (offset + bytes > bytes_) throw std::out_of_range("DeviceBuffer::upload past the end of the buffer");
  if (bytes > 0) check_cuda(cudaMemcpy(static_cast<char*>(data_) + offset, host, bytes, cudaMemcpyHostToDevice), "upload");
}

void DeviceBuffer::download(void* host, std::size_t bytes, std::size_t offset) const {
  if (offset + bytes > bytes_) throw std::out_of_range("DeviceBuffer::download past the end of the buffer");
  if (bytes > 0) {
    check_cuda(cudaMemcpy(host, static_cast<const char*>(data_) + offset, bytes, cudaMemcpyDeviceToHost), "download");
  }
}

void DeviceBuffer::fill_zero() {
  if (bytes_ > 0) check_cuda(cudaMemset(data_, 0, bytes_), "cudaMemset");
}

// ---- Row operations --------------------------------------------------------------------------------------------

void quantize_rows(const float* rows, std::int64_t count, const Int2Config& config, DeviceInt2Rows out,
                   const float* rotation, int heads, int matrices, Stream stream) {
  validate_format(config, "CUDA INT2 quantize");
  if (count < 0) throw std::invalid_argument("CUDA INT2 quantize: negative row count " + std::to_string(count));
  if (count == 0) return;
  if (rows == nullptr || out.codes == nullptr || out.scales == nullptr || out.zeros == nullptr) {
    throw std::invalid_argument("CUDA INT2 quantize: null buffer for " + std::to_string(count) + " rows");
  }
  if (rotation != nullptr) check_rotation_layout(heads, matrices, "CUDA INT2 quantize");
  ErrorSlots errors;
  const cudaStream_t s = as_stream(stream);
  errors.reset(s);
  detail::QuantizeLaunch p;
  p.format = row_format(config);
  p.rows = count;
  p.heads = rotation != nullptr ? heads : 1;
  p.heads_per_matrix = rotation != nullptr ? heads / matrices : 1;
  p.src_f32 = rows;
  p.rotation = rotation;
  p.codes = out.codes;
  p.scales = out.scales;
  p.zeros = out.zeros;
  p.errors = errors.data();
  detail::launch_quantize(p, stream);
  errors.throw_if_set(s, [](unsigned long long r) { return r; });
}

void rotate_rows(const float* rows, std::int64_t count, int head_dim, const float* rotation, int heads, int matrices,
                 bool transpose, float* out, Stream stream) {
  if (head_dim <= 0 || head_dim > kMaxCudaHeadDim) {
    throw std::invalid_argument("CUDA rotate: head_dim must be in 1 … 256, got " + std::to_string(head_dim));
  }
  check_rotation_layout(heads, matrices, "CUDA rotate");
  if (count <= 0) return;
  detail::RotateLaunch p;
  p.src = rows;
  p.rows = count;
  p.head_dim = head_dim;
  p.heads = heads;
  p.heads_per_matrix = heads / matrices;
  p.rotation = rotation;
  p.transpose = transpose;
  p.out_f32 = out;
  detail::launch_rotate(p, stream);
}

// ---- Cache configuration -----------------------------------------------------------------------------------------

CudaCacheConfig CudaCacheConfig::make(int kv_heads, int head_dim, std::int64_t capacity) {
  CudaCacheConfig c;
  c.kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.capacity = capacity;
  c.key_int2.head_dim = c.key_int2.group_size = head_dim;
  c.value_int2.head_dim = c.value_int2.group_size = head_dim;
  return c;
}

CudaCacheConfig CudaCacheConfig::full_precision_only(int kv_heads, int head_dim, std::int64_t capacity) {
  CudaCacheConfig c = make(kv_heads, head_dim, capacity);
  c.sink_tokens = int(std::min<std::int64_t>(capacity + kStep - 1, 1 << 30) / kStep * kStep);
  return c;
}

void CudaCacheConfig::validate() const {
  auto require = [](bool ok, const std::string& message) {
    if (!ok) throw std::invalid_argument("CUDA mixed cache: " + message);
  };
  require(kv_heads > 0, "kv_heads must be positive");
  require(head_dim == 64 || head_dim == 128 || head_dim == 256, "head_dim must be 64, 128 or 256 for decode");
  require(sink_tokens >= 0 && sink_tokens % kStep == 0, "sink_tokens must be a non-negative multiple of 8");
  require(recent_tokens >= 0 && recent_tokens % kStep == 0, "recent_tokens must be a non-negative multiple of 8");
  require(block_tokens > 0 && block_tokens % kStep == 0, "block_tokens must be a positive multiple of 8");
  require(capacity > 0, "capacity must be positive");
  require(decode_waves >= 1 && decode_waves <= 64, "decode_waves must be in 1 … 64");
  require(key_int2.head_dim == head_dim && value_int2.head_dim == head_dim, "INT2 head_dim must equal head_dim");
  validate_format(key_int2, "CUDA mixed cache keys");
  validate_format(value_int2, "CUDA mixed cache values");
}

// ---- The cache ---------------------------------------------------------------------------------------------------

struct CudaMixedCache::Impl {
  CudaCacheConfig config;
  detail::RowFormat key_format{}, value_format{};
  int rotation_matrices = 1;
  DeviceBuffer key_rotation, value_rotation;  // empty: identity

  std::int64_t sink_capacity = 0, ring_capacity = 0, page_count = 0;
  DeviceBuffer sink[2], ring[2];  // bf16 [capacity, Hkv, d]
  DeviceBuffer codes[2], scales[2], zeros[2];
  DeviceBuffer page_table;  // int32 [page_count]
  detail::FastDivider page_divider;  // by block_tokens
  ErrorSlots errors;

  std::int64_t sink_size = 0, int2_size = 0, recent_size = 0, ring_start = 0;

  // Decode scratch.
  DeviceBuffer query_rotated, partials;
  std::int64_t partial_floats = 0;
  int sm_count = 0;
  // Split kernels' occupancy: [CUDA cores, tensor cores bf16 only, tensor cores with INT2]; 0: not asked yet.
  int blocks_per_sm[3] = {0, 0, 0};
  int last_splits = 0;

  std::int64_t row_bytes_fp() const { return std::int64_t(config.kv_heads) * config.head_dim * 2; }
  const Int2Config& int2(int kind) const { return kind == 0 ? config.key_int2 : config.value_int2; }
  const detail::RowFormat& format(int kind) const { return kind == 0 ? key_format : value_format; }
  const float* rotation(int kind) const {
    const DeviceBuffer& b = kind == 0 ? key_rotation : value_rotation;
    return b.bytes() > 0 ? b.as<float>() : nullptr;
  }

  /// decode_waves waves of the split kernel's resident blocks (decode_plan.h; its occupancy asked once). The
  /// CUDA-core kernel launches once per run of ≤ 8 query heads, the tensor-core ones take the runs as grid.z.
  detail::DecodeSplitPlan plan_splits(std::int64_t int2_tokens, std::int64_t fp_tokens, int group_heads,
                                      bool tensor_cores) {
    const bool with_int2 = int2_tokens > 0;
    int& per_sm = blocks_per_sm[tensor_cores ? (with_int2 ? 2 : 1) : 0];
    if (per_sm == 0) {
      const int asked = tensor_cores
                            ? detail::decode_mma_blocks_per_sm(config.head_dim, config.key_int2.group_size, with_int2)
                            : detail::decode_split_blocks_per_sm(config.head_dim);
      per_sm = std::max(1, asked);
    }
    const int blocks_per_split = config.kv_heads * (tensor_cores ? detail::decode_head_launches(group_heads) : 1);
    return detail::plan_decode_splits(int2_tokens, fp_tokens, blocks_per_split,
                                      per_sm * std::max(sm_count, 1) * config.decode_waves);
  }

  void quantize(int kind, const detail::QuantizeLaunch& base) {
    detail::QuantizeLaunch p = base;
    p.format = format(kind);
    p.heads = config.kv_heads;
    p.heads_per_matrix = config.kv_heads / rotation_matrices;
    p.codes = codes[kind].as<std::uint8_t>();
    p.scales = scales[kind].data();
    p.zeros = zeros[kind].data();
    p.page_table = page_table.as<int>();
    p.page_tokens = config.block_tokens;
    p.dst_token_base = int2_size;
    p.errors = errors.data();
    detail::launch_quantize(p, nullptr);
  }

  void store_fp(int kind, const float* rows, std::int64_t tokens, std::uint16_t* dst, std::int64_t base,
                std::int64_t modulus) {
    detail::RotateLaunch p;
    p.src = rows;
    p.rows = tokens * config.kv_heads;
    p.head_dim = config.head_dim;
    p.heads = config.kv_heads;
    p.heads_per_matrix = config.kv_heads / rotation_matrices;
    p.rotation = rotation(kind);
    p.out_bf16 = dst;
    p.dst_token_base = base;
    p.dst_token_modulus = modulus;
    detail::launch_rotate(p, nullptr);
  }

  void append(const float* const kv[2], std::int64_t tokens) {
    if (tokens < 0) throw std::invalid_argument("CUDA mixed cache: negative token count");
    if (tokens == 0) return;
    if (kv[0] == nullptr || kv[1] == nullptr) throw std::invalid_argument("CUDA mixed cache: null rows");
    if (sink_size + int2_size + recent_size + tokens > config.capacity) {
      throw std::length_error("CUDA mixed cache: " + std::to_string(tokens) + " more tokens exceed the capacity of " +
                              std::to_string(config.capacity));
    }
    const std::int64_t stride = std::int64_t(config.kv_heads) * config.head_dim;  // floats per token
    const std::int64_t to_sink = std::min<std::int64_t>(tokens, std::max<std::int64_t>(0, config.sink_tokens - sink_size));
    if (to_sink > 0) {
      for (int kind = 0; kind < 2; ++kind) store_fp(kind, kv[kind], to_sink, sink[kind].as<std::uint16_t>(), sink_size, 0);
      sink_size += to_sink;
    }
    const std::int64_t rest = tokens - to_sink;
    if (rest == 0) return;

    // Single appends demote 8 whenever the window reaches W+8: in all, the oldest 8·⌊(R−W)/8⌋ of the R
    // window tokens, taken first from the ring, then straight from the new rows (via the same bf16 value).
    const std::int64_t window = recent_size + rest, w = config.recent_tokens;
    const std::int64_t demote = window >= w + kStep ? (window - w) / kStep * kStep : 0;
    const std::int64_t from_ring = std::min(demote, recent_size), from_new = demote - from_ring;
    bool quantized = false;
    if (demote > 0) errors.reset(nullptr);
    if (from_ring > 0) {  // the demotion kernel
      for (int kind = 0; kind < 2; ++kind) {
        detail::QuantizeLaunch p;
        p.rows = from_ring * config.kv_heads;
        p.src_bf16 = ring[kind].as<std::uint16_t>();
        p.src_token_base = ring_start;
        p.src_token_modulus = ring_capacity;
        quantize(kind, p);
      }
      ring_start = (ring_start + from_ring) % ring_capacity;
      recent_size -= from_ring;
      int2_size += from_ring;
      quantized = true;
    }
    if (from_new > 0) {
      for (int kind = 0; kind < 2; ++kind) {
        detail::QuantizeLaunch p;
        p.rows = from_new * config.kv_heads;
        p.src_f32 = kv[kind] + to_sink * stride;
        p.rotation = rotation(kind);
        p.round_to_bf16 = true;
        quantize(kind, p);
      }
      int2_size += from_new;
      quantized = true;
    }
    const std::int64_t to_ring = rest - from_new;
    if (to_ring > 0) {
      for (int kind = 0; kind < 2; ++kind) {
        store_fp(kind, kv[kind] + (to_sink + from_new) * stride, to_ring, ring[kind].as<std::uint16_t>(),
                 ring_start + recent_size, ring_capacity);
      }
      recent_size += to_ring;
    }
    if (quantized) {
      errors.throw_if_set(nullptr, [](unsigned long long r) { return r; });
    } else {
      check_cuda(cudaGetLastError(), "CUDA mixed cache append");
    }
  }
};

CudaMixedCache::CudaMixedCache(const CudaCacheConfig& config, const float* key_rotation, const float* value_rotation,
                               int rotation_matrices)
    : impl_(std::make_unique<Impl>()) {
  config.validate();
  if (rotation_matrices != 1 && rotation_matrices != config.kv_heads) {
    throw std::invalid_argument("CUDA mixed cache: rotation matrices must be 1 or kv_heads, got " +
                                std::to_string(rotation_matrices));
  }
  Impl& m = *impl_;
  m.config = config;
  m.key_format = row_format(config.key_int2);
  m.value_format = row_format(config.value_int2);
  m.rotation_matrices = rotation_matrices;
  const int d = config.head_dim, hkv = config.kv_heads;
  const std::size_t matrix_bytes = std::size_t(rotation_matrices) * d * d * sizeof(float);
  for (int kind = 0; kind < 2; ++kind) {
    const float* host = kind == 0 ? key_rotation : value_rotation;
    if (host == nullptr) continue;
    for (std::size_t i = 0; i < std::size_t(rotation_matrices) * d * d; ++i) {
      if (!std::isfinite(host[i])) throw std::invalid_argument("CUDA mixed cache: non-finite rotation element");
    }
    DeviceBuffer& b = kind == 0 ? m.key_rotation : m.value_rotation;
    b = DeviceBuffer(matrix_bytes);
    b.upload(host, matrix_bytes);
  }

  m.sink_capacity = std::min<std::int64_t>(config.sink_tokens, config.capacity);
  m.ring_capacity = config.recent_tokens + kStep;
  const std::int64_t int2_capacity = std::max<std::int64_t>(0, config.capacity - m.sink_capacity);
  m.page_count = (int2_capacity + config.block_tokens - 1) / config.block_tokens;
  const std::int64_t int2_rows = m.page_count * config.block_tokens * hkv;
  for (int kind = 0; kind < 2; ++kind) {
    m.sink[kind] = DeviceBuffer(std::size_t(std::max<std::int64_t>(m.sink_capacity, 1) * m.row_bytes_fp()));
    m.ring[kind] = DeviceBuffer(std::size_t(m.ring_capacity * m.row_bytes_fp()));
    const Int2Config& f = m.int2(kind);
    const std::int64_t rows = std::max<std::int64_t>(int2_rows, 1);
    m.codes[kind] = DeviceBuffer(std::size_t(rows * f.packed_bytes()));
    m.scales[kind] = DeviceBuffer(std::size_t(rows * f.groups() * scale_bytes(f)));
    m.zeros[kind] = DeviceBuffer(std::size_t(rows * f.groups() * scale_bytes(f)));
  }
  // Pages are handed out in order here; the kernels only ever go through the table.
  std::vector<int> table(std::size_t(std::max<std::int64_t>(m.page_count, 1)));
  for (std::size_t i = 0; i < table.size(); ++i) table[i] = int(i);
  m.page_table = DeviceBuffer(table.size() * sizeof(int));
  m.page_table.upload(table.data(), table.size() * sizeof(int));
  m.page_divider = detail::FastDivider::make(std::uint32_t(config.block_tokens));

  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&m.sm_count, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
}

CudaMixedCache::~CudaMixedCache() = default;
CudaMixedCache::CudaMixedCache(CudaMixedCache&&) noexcept = default;
CudaMixedCache& CudaMixedCache::operator=(CudaMixedCache&&) noexcept = default;

void CudaMixedCache::append(const float* k, const float* v, std::int64_t tokens) {
  if (tokens <= 0) {
    const float* rows[2] = {k, v};
    impl_->append(rows, tokens);
    return;
  }
  if (k == nullptr || v == nullptr) throw std::invalid_argument("CUDA mixed cache: null rows");
  const std::size_t bytes = std::size_t(tokens) * impl_->config.kv_heads * impl_->config.head_dim * sizeof(float);
  DeviceBuffer dk(bytes), dv(bytes);
  dk.upload(k, bytes);
  dv.upload(v, bytes);
  const float* rows[2] = {dk.as<float>(), dv.as<float>()};
  impl_->append(rows, tokens);
  check_cuda(cudaDeviceSynchronize(), "CUDA mixed cache append");  // before the staging buffers go
}

void CudaMixedCache::append_device(const float* k, const float* v, std::int64_t tokens) {
  const float* rows[2] = {k, v};
  impl_->append(rows, tokens);
}

void CudaMixedCache::decode(const float* q, int query_heads, float* out, float softmax_scale) {
  if (query_heads <= 0) throw std::invalid_argument("CUDA decode: query_heads must be positive");
  const std::size_t bytes = std::size_t(query_heads) * impl_->config.head_dim * sizeof(float);
  DeviceBuffer dq(bytes), dout(bytes);
  dq.upload(q, bytes);
  decode_device(dq.as<float>(), query_heads, dout.as<float>(), softmax_scale, nullptr);
  dout.download(out, bytes);  // cudaMemcpy on the default stream waits for the kernels
}

void CudaMixedCache::decode_device(const float* q, int query_heads, float* out, float softmax_scale, Stream stream) {
  Impl& m = *impl_;
  const CudaCacheConfig& c = m.config;
  const int d = c.head_dim;
  if (query_heads <= 0 || query_heads % c.kv_heads != 0) {
    throw std::invalid_argument("CUDA decode: query_heads (" + std::to_string(query_heads) +
                                ") must be a positive multiple of kv_heads (" + std::to_string(c.kv_heads) + ")");
  }
  const std::int64_t n2 = m.int2_size, nfp = m.sink_size + m.recent_size;
  if (n2 + nfp == 0) throw std::logic_error("CUDA decode: the cache is empty");
  if (n2 >= detail::kFastDividerLimit) throw std::length_error("CUDA decode: 2^31 INT2 tokens or more");
  const int group_heads = query_heads / c.kv_heads;

  // Tensor cores take every split when asked for and the INT2 geometry allows; either way one wave of blocks.
  const bool tensor_cores =
      c.decode_kernel == DecodeKernel::kTensorCores &&
      (n2 == 0 || detail::int2_mma_decode_supported(d, c.key_int2.group_size, c.value_int2.group_size));
  const detail::DecodeSplitPlan plan = m.plan_splits(n2, nfp, group_heads, tensor_cores);
  const std::int64_t chunk = plan.int2_chunk, fp_chunk = plan.fp_chunk;
  const int int2_splits = plan.int2_splits, fp_splits = plan.fp_splits;
  const int splits = int2_splits + fp_splits;
  m.last_splits = splits;

  const std::int64_t need = std::int64_t(splits) * query_heads * (d + 2);
  if (need > m.partial_floats) {
    m.partials = DeviceBuffer(std::size_t(need) * sizeof(float));
    m.partial_floats = need;
  }
  const std::size_t q_bytes = std::size_t(query_heads) * d * sizeof(float);
  if (m.query_rotated.bytes() < q_bytes) m.query_rotated = DeviceBuffer(q_bytes);

  // A plain launch, always (also for the identity): the tensor-core split kernel after it is a dependent launch
  // whose blocks read the cache before they wait (dependent_launch.cuh), which is safe only because this
  // launch does not start before every earlier kernel on the stream (the appends) has finished.
  detail::RotateLaunch r;
  r.src = q;
  r.rows = query_heads;
  r.head_dim = d;
  r.heads = query_heads;
  r.heads_per_matrix = query_heads / m.rotation_matrices;
  r.rotation = m.rotation(0);
  r.out_f32 = m.query_rotated.as<float>();
  detail::launch_rotate(r, stream);

  detail::DecodeLaunch p;
  p.head_dim = d;
  p.kv_heads = c.kv_heads;
  p.group_heads = group_heads;
  const float scale = softmax_scale > 0.0f ? softmax_scale : 1.0f / std::sqrt(float(d));
  p.score_scale_log2 = scale * 1.4426950408889634f;
  p.q = m.query_rotated.as<float>();
  p.int2_tokens = n2;
  p.page_tokens = m.page_divider;
  p.page_table = m.page_table.as<int>();
  p.k_codes = m.codes[0].as<std::uint8_t>();
  p.v_codes = m.codes[1].as<std::uint8_t>();
  p.k_scales = m.scales[0].data();
  p.k_zeros = m.zeros[0].data();
  p.v_scales = m.scales[1].data();
  p.v_zeros = m.zeros[1].data();
  p.k_group_size = c.key_int2.group_size;
  p.v_group_size = c.value_int2.group_size;
  p.k_float16 = c.key_int2.scale_type == ScaleType::kFloat16;
  p.v_float16 = c.value_int2.scale_type == ScaleType::kFloat16;
  p.int2_chunk = chunk;
  p.int2_splits = int2_splits;
  p.sink_k = m.sink[0].as<std::uint16_t>();
  p.sink_v = m.sink[1].as<std::uint16_t>();
  p.sink_tokens = m.sink_size;
  p.ring_k = m.ring[0].as<std::uint16_t>();
  p.ring_v = m.ring[1].as<std::uint16_t>();
  p.ring_start = m.ring_start;
  p.ring_capacity = m.ring_capacity;
  p.recent_tokens = m.recent_size;
  p.fp_chunk = fp_chunk;
  p.fp_splits = fp_splits;
  float* partials = m.partials.as<float>();
  p.part_m = partials;
  p.part_l = partials + std::int64_t(splits) * query_heads;
  p.part_acc = partials + std::int64_t(splits) * query_heads * 2;
  p.value_rotation = m.rotation(1);
  p.value_matrices = m.rotation_matrices;
  p.out = out;
  p.tensor_cores = tensor_cores;
  p.overlap_launches = tensor_cores && c.overlap_launches;
  detail::launch_decode(p, stream);
}

const CudaCacheConfig& CudaMixedCache::config() const { return impl_->config; }
void CudaMixedCache::set_decode_kernel(DecodeKernel kernel) { impl_->config.decode_kernel = kernel; }
void CudaMixedCache::set_overlap_launches(bool overlap) { impl_->config.overlap_launches = overlap; }
void CudaMixedCache::set_decode_waves(int waves) {
  CudaCacheConfig config = impl_->config;
  config.decode_waves = waves;
  config.validate();
  impl_->config = config;
}
std::int64_t CudaMixedCache::size() const { return impl_->sink_size + impl_->int2_size + impl_->recent_size; }
std::int64_t CudaMixedCache::sink_size() const { return impl_->sink_size; }
std::int64_t CudaMixedCache::int2_size() const { return impl_->int2_size; }
std::int64_t CudaMixedCache::recent_size() const { return impl_->recent_size; }
int CudaMixedCache::last_decode_splits() const { return impl_->last_splits; }

std::int64_t CudaMixedCache::decode_bytes() const {
  const Impl& m = *impl_;
  std::int64_t bytes = (m.sink_size + m.recent_size) * m.row_bytes_fp() * 2;
  for (int kind = 0; kind < 2; ++kind) {
    const Int2Config& f = m.int2(kind);
    bytes += m.int2_size * m.config.kv_heads *
             (f.packed_bytes() + 2 * std::int64_t(f.groups()) * std::int64_t(scale_bytes(f)));
  }
  return bytes;
}

void CudaMixedCache::download_int2(bool value, std::uint8_t* codes, void* scales, void* zeros) const {
  const Impl& m = *impl_;
  const int kind = value ? 1 : 0;
  const Int2Config& f = m.int2(kind);
  const int hkv = m.config.kv_heads, block = m.config.block_tokens;
  const std::size_t code_row = std::size_t(f.packed_bytes());
  const std::size_t scale_row = std::size_t(f.groups()) * scale_bytes(f);
  // Pages are in table order (identity); copy page by page and reorder [Hkv][block] -> [token][Hkv].
  std::vector<std::uint8_t> page_codes(std::size_t(hkv) * block * code_row), page_scales(std::size_t(hkv) * block * scale_row),
      page_zeros(page_scales.size());
  for (std::int64_t page = 0; page * block < m.int2_size; ++page) {
    const std::size_t base_row = std::size_t(page) * hkv * block;
    m.codes[kind].download(page_codes.data(), page_codes.size(), base_row * code_row);
    m.scales[kind].download(page_scales.data(), page_scales.size(), base_row * scale_row);
    m.zeros[kind].download(page_zeros.data(), page_zeros.size(), base_row * scale_row);
    const std::int64_t rows_here = std::min<std::int64_t>(block, m.int2_size - page * block);
    for (std::int64_t i = 0; i < rows_here; ++i) {
      for (int h = 0; h < hkv; ++h) {
        const std::size_t src = std::size_t(h) * block + std::size_t(i);
        const std::size_t dst = std::size_t(page * block + i) * hkv + std::size_t(h);
        std::memcpy(codes + dst * code_row, page_codes.data() + src * code_row, code_row);
        std::memcpy(static_cast<std::uint8_t*>(scales) + dst * scale_row, page_scales.data() + src * scale_row, scale_row);
        std::memcpy(static_cast<std::uint8_t*>(zeros) + dst * scale_row, page_zeros.data() + src * scale_row, scale_row);
      }
    }
  }
}

void CudaMixedCache::download_full_precision(bool value, std::uint16_t* rows) const {
  const Impl& m = *impl_;
  const int kind = value ? 1 : 0;
  const std::size_t token_bytes = std::size_t(m.row_bytes_fp());
  m.sink[kind].download(rows, std::size_t(m.sink_size) * token_bytes);
  std::uint8_t* dst = reinterpret_cast<std::uint8_t*>(rows) + std::size_t(m.sink_size) * token_bytes;
  for (std::int64_t i = 0; i < m.recent_size; ++i) {
    const std::int64_t slot = (m.ring_start + i) % m.ring_capacity;
    m.ring[kind].download(dst + std::size_t(i) * token_bytes, token_bytes, std::size_t(slot) * token_bytes);
  }
}

}  // namespace oscar::runtime::gpu
