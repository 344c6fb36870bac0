#include "io/rotation_pair.h"

#include <algorithm>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "io/rotation_gguf.h"

namespace oscar::io {

namespace fs = std::filesystem;

std::string find_rotation_file(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name.rfind(prefix, 0) == 0 && entry.path().extension() == ".pt") found.push_back(entry.path().string());
  }
  std::sort(found.begin(), found.end());
  if (found.empty()) throw InputError(dir + ": no " + prefix + "*.pt rotation file");
  if (found.size() > 1) throw InputError(dir + ": several " + prefix + "*.pt files (" + found[0] + ", " + found[1] + "): keep one set per directory");
  return found.front();
}

RotationPair read_rotation_pair(const std::string& path) {
  if (!fs::exists(path)) throw InputError(path + ": no such file or directory");
  if (fs::is_directory(path)) {
    return {read_rotation_set(find_rotation_file(path, "k_rotation_")), read_rotation_set(find_rotation_file(path, "v_rotation_"))};
  }
  if (fs::path(path).extension() != ".gguf") throw InputError(path + ": expected a rotation directory or a .gguf file");
  return read_rotation_gguf(path);
}

std::pair<std::string, std::string> write_rotation_pair(const std::string& dir, const RotationPair& pair) {
  fs::create_directories(dir);
  const std::string key = (fs::path(dir) / ("k_rotation_" + pair.key.objective + ".pt")).string();
  const std::string value = (fs::path(dir) / ("v_rotation_" + pair.value.objective + ".pt")).string();
  write_rotation_set(key, pair.key);
  write_rotation_set(value, pair.value);
  return {key, value};
}

}  // namespace oscar::io
