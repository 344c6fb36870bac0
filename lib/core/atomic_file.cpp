#include "core/atomic_file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "core/error.h"

namespace oscar {

void write_file_atomically(const std::string& path, const std::string& content) {
  const std::string staging = path + ".tmp";
  {
    std::ofstream out(staging, std::ios::binary | std::ios::trunc);
    out << content;
    out.close();
    if (!out) {
      std::remove(staging.c_str());
      throw InputError(path + ": cannot write (" + std::strerror(errno) + ")");
    }
  }
  if (std::rename(staging.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(staging.c_str());
    throw InputError(path + ": cannot rename the finished file into place (" + reason + ")");
  }
}

}  // namespace oscar
