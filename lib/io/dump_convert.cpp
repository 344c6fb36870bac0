#include "io/dump_convert.h"

#include <cstring>
#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "io/hdf5_dump.h"
#include "io/torch_file.h"

namespace oscar::io {

namespace fs = std::filesystem;

namespace {

constexpr Projection kProjections[] = {Projection::kQuery, Projection::kKey, Projection::kValue};

/// Calls the optional progress callback once per converted chunk.
class ProgressCounter {
 public:
  ProgressCounter(const ActivationDump& source, const ConvertProgressCallback& callback) : callback_(callback) {
    for (int layer_id : source.layer_ids()) total_ += source.chunk_ids(layer_id).size();
  }
  void chunk_done(int layer_id, int chunk_id) {
    ++done_;
    if (callback_) callback_(ConvertProgress{layer_id, chunk_id, done_, total_});
  }

 private:
  const ConvertProgressCallback& callback_;
  std::size_t done_ = 0;
  std::size_t total_ = 0;
};

HostTensor seq_lens_tensor(const std::vector<std::int32_t>& seq_lens) {
  HostTensor tensor;
  tensor.dtype = DType::kInt32;
  tensor.shape = {std::int64_t(seq_lens.size())};
  tensor.bytes.resize(tensor.nbytes());
  if (!seq_lens.empty()) std::memcpy(tensor.bytes.data(), seq_lens.data(), tensor.bytes.size());
  return tensor;
}

void write_hdf5(const ActivationDump& source, const std::string& destination, ProgressCounter& progress) {
  Hdf5DumpMetadata metadata;
  metadata.model = source.model_name();
  metadata.num_layers = int(source.layer_ids().size());
  metadata.geometry = source.geometry();
  metadata.source_dtype = source.source_dtype();
  // The writer removes its temporary file if anything below throws.
  Hdf5DumpWriter writer(destination, metadata);
  for (int layer_id : source.layer_ids()) {
    for (int chunk_id : source.chunk_ids(layer_id)) {
      // One chunk's q, k and v at a time: memory stays bounded by the largest chunk.
      writer.append_chunk(layer_id, chunk_id, source.read(layer_id, chunk_id, Projection::kQuery),
                          source.read(layer_id, chunk_id, Projection::kKey),
                          source.read(layer_id, chunk_id, Projection::kValue), source.seq_lens(layer_id, chunk_id));
      progress.chunk_done(layer_id, chunk_id);
    }
  }
  writer.finish();
}

void write_sglang_layer(const ActivationDump& source, int layer_id, const fs::path& layer_dir,
                        ProgressCounter& progress) {
  for (const char* sub : {"q", "k", "v", "seq_lens"}) fs::create_directories(layer_dir / sub);
  for (int chunk_id : source.chunk_ids(layer_id)) {
    const std::string file_name = std::to_string(chunk_id) + ".pt";
    for (Projection projection : kProjections) {
      write_torch_tensor((layer_dir / projection_name(projection) / file_name).string(),
                         source.read(layer_id, chunk_id, projection));
    }
    // seq_lens are optional per chunk: a chunk without them gets no file.
    const std::vector<std::int32_t> seq_lens = source.seq_lens(layer_id, chunk_id);
    if (!seq_lens.empty()) write_torch_tensor((layer_dir / "seq_lens" / file_name).string(), seq_lens_tensor(seq_lens));
    progress.chunk_done(layer_id, chunk_id);
  }
}

void write_sglang(const ActivationDump& source, const std::string& destination, ProgressCounter& progress) {
  const fs::path temp_dir = destination + ".tmp";
  std::error_code ignored;
  fs::remove_all(temp_dir, ignored);  // a leftover of an interrupted conversion to the same destination
  try {
    for (int layer_id : source.layer_ids()) {
      write_sglang_layer(source, layer_id, temp_dir / ("layer_" + std::to_string(layer_id)), progress);
    }
    fs::rename(temp_dir, destination);
  } catch (const fs::filesystem_error& error) {
    fs::remove_all(temp_dir, ignored);
    throw InputError(error.path1().string() + ": " + error.code().message());
  } catch (...) {
    fs::remove_all(temp_dir, ignored);
    throw;
  }
}

}  // namespace

void convert_dump(const ActivationDump& source, const std::string& destination,
                  const ConvertProgressCallback& progress) {
  std::error_code error;
  if (fs::exists(fs::symlink_status(destination, error))) {
    throw UsageError(destination + ": already exists (refusing to overwrite; remove it or pick another name)");
  }
  ProgressCounter counter(source, progress);
  if (is_hdf5_dump_path(destination)) {
    write_hdf5(source, destination, counter);
  } else {
    write_sglang(source, destination, counter);
  }
}

void convert_dump(const std::string& source_path, const std::string& destination,
                  const DumpOpenOptions& source_options, const ConvertProgressCallback& progress) {
  DumpOpenOptions options = source_options;
  options.include_chunk0 = true;  // a conversion keeps everything; readers of the result still skip chunk 0
  const std::unique_ptr<ActivationDump> source = open_activation_dump(source_path, options);
  convert_dump(*source, destination, progress);
}

}  // namespace oscar::io
