#include "model/gguf_file.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <numeric>

#include "core/dtype.h"
#include "core/error.h"
#include "io/gguf.h"

namespace oscar::model {
namespace {

namespace fmt = io::gguf_format;

static_assert(std::uint32_t(GgmlType::kF32) == fmt::kGgmlF32 && std::uint32_t(GgmlType::kF16) == fmt::kGgmlF16 &&
                  std::uint32_t(GgmlType::kQ8_0) == fmt::kGgmlQ8_0 && std::uint32_t(GgmlType::kBF16) == fmt::kGgmlBF16,
              "GgmlType follows ggml's numbering");

// Q8_0 block: an fp16 scale, then 32 int8 quants.
constexpr std::size_t kQ8BlockSize = 32;
constexpr std::size_t kQ8BlockBytes = 2 + kQ8BlockSize;

GgufTensorInfo model_view(const io::GgufTensorInfo& info) {
  GgufTensorInfo view;
  view.name = info.name;
  view.type = info.type;
  view.offset = info.offset;
  // The reader keeps every extent within int64.
  view.shape.assign(info.ne.rbegin(), info.ne.rend());
  return view;
}

}  // namespace

std::int64_t GgufTensorInfo::numel() const {
  // The reader bounds the product of a file's extents by INT64_MAX unless an extent is 0.
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  return std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<std::int64_t>());
}

std::string ggml_type_name(std::uint32_t type) { return io::ggml_type_name(type); }

struct GgufFile::Impl {
  explicit Impl(const std::string& path) : reader(path) {
    tensors.reserve(reader.tensors().size());
    for (const io::GgufTensorInfo& info : reader.tensors()) tensors.push_back(model_view(info));
  }

  io::GgufReader reader;
  std::vector<GgufTensorInfo> tensors;  ///< reader.tensors() with shapes outermost first, same order

  std::string what(const std::string& key) const { return reader.path() + ": metadata " + key; }
};

GgufFile::GgufFile(const std::string& path) : impl_(std::make_unique<Impl>(path)) {}
GgufFile::~GgufFile() = default;
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;

const std::string& GgufFile::path() const { return impl_->reader.path(); }
int GgufFile::version() const { return int(impl_->reader.version()); }

bool GgufFile::has(const std::string& key) const { return impl_->reader.find(key) != nullptr; }

std::vector<std::string> GgufFile::keys() const {
  std::vector<std::string> keys;
  for (const io::GgufKeyValue& kv : impl_->reader.metadata()) keys.push_back(kv.key);
  return keys;
}

std::string GgufFile::get_string(const std::string& key) const { return impl_->reader.get_string(key); }
std::int64_t GgufFile::get_int(const std::string& key) const { return impl_->reader.get_int64(key); }
double GgufFile::get_float(const std::string& key) const { return impl_->reader.get_double(key); }
bool GgufFile::get_bool(const std::string& key) const { return impl_->reader.get_bool(key); }

std::vector<std::string> GgufFile::get_string_array(const std::string& key) const {
  return impl_->reader.get_string_array(key);
}

std::vector<std::int64_t> GgufFile::get_int_array(const std::string& key) const {
  const io::GgufValue& v = impl_->reader.value(key);
  if (v.type == io::GgufType::kArray && v.element_type == io::GgufType::kBool) {  // read as 0/1, as before
    std::vector<std::int64_t> out;
    out.reserve(v.elements.size());
    for (const io::GgufValue& element : v.elements) out.push_back(element.bits != 0);
    return out;
  }
  return impl_->reader.get_int64_array(key);
}

std::vector<float> GgufFile::get_float_array(const std::string& key) const {
  const std::vector<double> values = impl_->reader.value(key).as_double_array(impl_->what(key));
  return std::vector<float>(values.begin(), values.end());
}

std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}
std::int64_t GgufFile::get_int(const std::string& key, std::int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}
double GgufFile::get_float(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool(const std::string& key, bool fallback) const { return has(key) ? get_bool(key) : fallback; }

const std::vector<GgufTensorInfo>& GgufFile::tensors() const { return impl_->tensors; }

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  const io::GgufTensorInfo* found = impl_->reader.find_tensor(name);
  return found == nullptr ? nullptr : &impl_->tensors[std::size_t(found - impl_->reader.tensors().data())];
}

std::vector<float> GgufFile::dequantize(const GgufTensorInfo& tensor) const {
  const std::vector<GgufTensorInfo>& views = impl_->tensors;
  const io::GgufTensorInfo* info = nullptr;
  if (!views.empty() && &tensor >= views.data() && &tensor < views.data() + views.size()) {
    info = &impl_->reader.tensors()[std::size_t(&tensor - views.data())];
  } else {
    info = impl_->reader.find_tensor(tensor.name);
    if (info == nullptr) throw InputError(path() + ": no tensor " + tensor.name);
  }
  // The reader checked at open that the bytes lie inside the file and match the type and extents.
  const io::GgufBytes bytes = impl_->reader.tensor_data(*info);
  const std::uint8_t* src = bytes.data;
  const std::size_t n = std::size_t(info->numel());
  std::vector<float> out(n);
  switch (GgmlType(info->type)) {
    case GgmlType::kF32:
      if (n > 0) std::memcpy(out.data(), src, n * sizeof(float));
      break;
    case GgmlType::kF16:
    case GgmlType::kBF16: {
      const bool is_f16 = GgmlType(info->type) == GgmlType::kF16;
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t half;
        std::memcpy(&half, src + 2 * i, 2);
        out[i] = is_f16 ? float16_to_float(half) : bfloat16_to_float(half);
      }
      break;
    }
    case GgmlType::kQ8_0:
      for (std::size_t block = 0; block < n / kQ8BlockSize; ++block) {
        const std::uint8_t* b = src + block * kQ8BlockBytes;
        std::uint16_t scale_bits;
        std::memcpy(&scale_bits, b, 2);
        const float scale = float16_to_float(scale_bits);
        const auto* quants = reinterpret_cast<const std::int8_t*>(b + 2);
        for (std::size_t j = 0; j < kQ8BlockSize; ++j) out[block * kQ8BlockSize + j] = scale * float(quants[j]);
      }
      break;
    default:
      throw InputError(path() + ": tensor " + info->name + " has type " + ggml_type_name(info->type) +
                       "; supported: F32, F16, BF16, Q8_0");
  }
  return out;
}

}  // namespace oscar::model
