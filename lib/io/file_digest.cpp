#include "io/file_digest.h"

#include <openssl/evp.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>

#include "core/error.h"
#include "core/parallel_for.h"

namespace oscar::io {

namespace fs = std::filesystem;

namespace {

using DigestContext = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

DigestContext new_sha256() {
  DigestContext context(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr);
  return context;
}

std::string finish_hex(EVP_MD_CTX* context) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(context, digest, &length);
  static const char* hex = "0123456789abcdef";
  std::string text;
  for (unsigned int i = 0; i < length; ++i) {
    text += hex[digest[i] >> 4];
    text += hex[digest[i] & 15];
  }
  return text;
}

}  // namespace

std::string sha256_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw InputError(path + ": cannot open for hashing");
  DigestContext context = new_sha256();
  std::vector<char> buffer(1 << 20);
  while (file) {
    file.read(buffer.data(), std::streamsize(buffer.size()));
    EVP_DigestUpdate(context.get(), buffer.data(), std::size_t(file.gcount()));
  }
  if (file.bad()) throw InputError(path + ": read error while hashing");
  return finish_hex(context.get());
}

std::string sha256_bytes(const std::string& bytes) {
  DigestContext context = new_sha256();
  EVP_DigestUpdate(context.get(), bytes.data(), bytes.size());
  return finish_hex(context.get());
}

std::vector<FileDigest> digest_inputs(const std::string& path, int threads) {
  std::vector<FileDigest> digests;
  if (fs::is_directory(path)) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::recursive_directory_iterator(path)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    digests.resize(files.size());
    parallel_for(int(files.size()), threads, [&](int i) {
      const fs::path& file = files[std::size_t(i)];
      digests[std::size_t(i)] = {fs::relative(file, path).generic_string(), fs::file_size(file), sha256_file(file.string())};
    });
  } else {
    digests.push_back({path, fs::file_size(path), sha256_file(path)});
  }
  return digests;
}

std::vector<FileDigest> digest_paths(const std::vector<std::string>& paths) {
  std::vector<FileDigest> digests;
  for (const std::string& path : paths) {
    for (FileDigest& digest : digest_inputs(path, 1)) digests.push_back(std::move(digest));
  }
  return digests;
}

}  // namespace oscar::io
