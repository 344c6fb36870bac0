// Sizes and SHA-256 digests of input files, recorded in calibration.json so a result can be traced
// back to the exact bytes it was computed from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace oscar::io {

struct FileDigest {
  std::string path;     ///< relative to the input root for directories, else as given
  std::uint64_t size = 0;
  std::string sha256;   ///< lower-case hex
};

/// SHA-256 of one file, streamed in 1 MiB blocks. Throws InputError when it cannot be read.
std::string sha256_file(const std::string& path);

/// SHA-256 of a byte string, lower-case hex.
std::string sha256_bytes(const std::string& bytes);
/// One entry per regular file: the file itself, or every file under a directory in sorted path order,
/// hashed by `threads` threads.
std::vector<FileDigest> digest_inputs(const std::string& path, int threads = 1);
/// digest_inputs of each path in turn, concatenated.
std::vector<FileDigest> digest_paths(const std::vector<std::string>& paths);

}  // namespace oscar::io
