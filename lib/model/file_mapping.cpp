#include "model/file_mapping.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace oscar::model {

std::shared_ptr<const FileMapping> FileMapping::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(path + ": cannot open (" + std::strerror(errno) + ")");
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    throw InputError(path + ": not a regular file");
  }
  std::shared_ptr<FileMapping> mapping(new FileMapping());
  mapping->size_ = std::size_t(info.st_size);
  if (mapping->size_ > 0) {
    void* base = ::mmap(nullptr, mapping->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int error = errno;
    if (base == MAP_FAILED) {
      ::close(fd);
      throw InputError(path + ": cannot map (" + std::strerror(error) + ")");
    }
    mapping->base_ = base;
  }
  ::close(fd);  // the mapping stays valid without the descriptor
  return mapping;
}

FileMapping::~FileMapping() {
  if (base_ != nullptr) ::munmap(base_, size_);
}

}  // namespace oscar::model
