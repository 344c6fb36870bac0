#include "io/activation_dump.h"

#include <filesystem>

#include "core/error.h"
#include "io/hdf5_dump.h"
#include "io/sglang_dump.h"

namespace oscar::io {

namespace fs = std::filesystem;

const char* projection_name(Projection projection) {
  switch (projection) {
    case Projection::kQuery: return "q";
    case Projection::kKey: return "k";
    case Projection::kValue: return "v";
  }
  return "?";
}

bool is_hdf5_dump_path(const std::string& path) {
  const std::string extension = fs::path(path).extension().string();
  return extension == ".h5" || extension == ".hdf5";
}

std::unique_ptr<ActivationDump> open_activation_dump(const std::string& path, const DumpOpenOptions& options) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (error || !fs::exists(status)) throw InputError(path + ": no such file or directory");
  // The layout follows from what is on disk: a directory can only be SGLang's, a file only ours.
  if (fs::is_directory(status)) return std::make_unique<SglangDump>(path, options);
  if (is_hdf5_dump_path(path)) return std::make_unique<Hdf5Dump>(path, options);
  throw InputError(path + ": not an activation dump (expected an SGLang dump directory or an .h5/.hdf5 file)");
}

}  // namespace oscar::io
