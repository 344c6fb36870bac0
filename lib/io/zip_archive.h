// The zip container of `torch.save` files: a bounds-checked reader and a writer that reproduces PyTorch's
// byte layout exactly.
//
// PyTorch stores every record uncompressed (method 0) under one root folder ("archive/", or the file stem):
// data.pkl (the pickle), data/<key> (one per storage), version, ... Data starts on 64-byte boundaries
// (an "FB" extra field of 'Z' padding), so storages can be read straight into place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/host_tensor.h"
#include "io/pickle.h"

namespace oscar::io {

struct ZipEntry {
  std::string name;                   ///< full name, e.g. "archive/data/0"
  std::uint64_t header_offset = 0;    ///< local file header
  std::uint64_t data_offset = 0;      ///< first byte of the stored data
  std::uint64_t size = 0;             ///< stored, so compressed size == uncompressed size
  std::uint32_t crc32 = 0;
};

/// Opens a zip of stored entries and indexes its central directory (zip64 end records and extra fields
/// understood). Entries are read on demand with pread, so a 200 MB file costs only what is read.
/// Every problem throws InputError("<path>: <problem>").
class ZipReader {
 public:
  explicit ZipReader(const std::string& path);
  ~ZipReader();
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  const std::string& path() const { return path_; }
  std::uint64_t file_size() const { return file_size_; }
  const std::vector<ZipEntry>& entries() const { return entries_; }
  /// The entry with exactly this name, or nullptr.
  const ZipEntry* find(std::string_view name) const;

  /// The whole entry, CRC-checked.
  std::vector<std::uint8_t> read(const ZipEntry& entry) const;
  /// The whole entry into `out` (entry.size bytes), CRC-checked.
  void read_into(const ZipEntry& entry, void* out) const;
  /// Bytes [offset, offset + count) of an entry, without the CRC check (that needs the whole entry).
  void read_range(const ZipEntry& entry, std::uint64_t offset, std::uint64_t count, void* out) const;

  [[noreturn]] void fail(const std::string& problem) const;

 private:
  struct CentralDirectory;
  void pread_exact(std::uint64_t offset, std::size_t count, void* out) const;
  CentralDirectory find_central_directory() const;
  void read_zip64_end(CentralDirectory* directory) const;
  void parse_central_directory();
  ZipEntry parse_central_entry(const std::uint8_t* header, std::size_t available, std::size_t* header_size) const;
  void read_zip64_extra(const std::string& name, const std::uint8_t* extra, std::size_t extra_length,
                        std::initializer_list<std::uint64_t*> fields) const;
  void locate_data(ZipEntry* entry, std::uint64_t data_limit);

  std::string path_;
  int fd_ = -1;
  std::uint64_t file_size_ = 0;
  std::vector<ZipEntry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
};

/// A torch.save archive: the zip plus the conventions of its records.
class TorchArchive {
 public:
  explicit TorchArchive(const std::string& path);

  const std::string& path() const { return zip_.path(); }
  const ZipReader& zip() const { return zip_; }
  /// The folder every record lives in ("archive", or the stem of the file name torch.save was given).
  const std::string& root() const { return root_; }
  /// Record "<root>/<name>", or nullptr.
  const ZipEntry* find_record(std::string_view name) const;
  /// Record "<root>/<name>"; throws InputError("<path>: missing record '<name>'").
  const ZipEntry& record(std::string_view name) const;

  /// data.pkl, parsed. Errors read "<path>: data.pkl: byte <n>: <problem>".
  pickle::ValuePtr load_pickle() const;
  /// Checks that a tensor of the pickle can be loaded (C-contiguous strides, storage record present and
  /// large enough) without reading its data. `what` prefixes errors, e.g. "layer 3: rotation".
  void check_tensor(const pickle::TensorRef& tensor, const std::string& what = "tensor") const;
  /// The tensor's elements as a dense HostTensor in the stored dtype (storage offset applied).
  HostTensor load_tensor(const pickle::TensorRef& tensor, const std::string& what = "tensor") const;

 private:
  ZipReader zip_;
  std::string root_;
};

/// The root folder torch.save uses for a path: the file name without directory and last extension.
std::string torch_archive_root(const std::string& path);

/// Writes zip entries with PyTorch's layout (miniz as PyTorchStreamWriter drives it: data descriptors,
/// 64-byte aligned data, zip64 end records) into a temporary file beside `path`, renamed into place by
/// finish(). Destroying an unfinished writer deletes the temporary file, so failures leave nothing behind.
/// I/O failures throw std::runtime_error("<path>: ..."). Archives of 4 GiB or more are not supported.
class ZipWriter {
 public:
  explicit ZipWriter(const std::string& path);
  ~ZipWriter();
  ZipWriter(const ZipWriter&) = delete;
  ZipWriter& operator=(const ZipWriter&) = delete;

  /// Appends a stored entry; returns the CRC-32 of its data.
  std::uint32_t add(const std::string& name, const void* data, std::size_t size);
  /// Writes the central directory and end records, syncs and renames the file into place.
  void finish();

 private:
  struct CentralEntry {
    std::string name;
    std::uint32_t crc32;
    std::uint32_t size;
    std::uint32_t header_offset;
    std::uint16_t flags;
  };
  void write_bytes(const void* data, std::size_t size);
  void flush_buffer();
  [[noreturn]] void fail_io(const std::string& what) const;

  std::string path_;
  std::string temp_path_;
  int fd_ = -1;
  std::uint64_t offset_ = 0;
  std::string buffer_;
  std::vector<CentralEntry> central_;
  bool finished_ = false;
};

/// One storage's bytes for write_torch_archive (not owned).
struct TorchStorageData {
  std::string key;  ///< record "data/<key>", as named by the pickle's persistent ids
  const void* data = nullptr;
  std::size_t size = 0;
};

/// Writes a complete torch.save file, byte-identical to PyTorch 2.x given the same pickle and storages:
/// records data.pkl, .format_version, .storage_alignment, byteorder, data/<key>... (in the given order),
/// version, and .data/serialization_id computed as PyTorch does (hash of record names, combined CRCs),
/// so the output is reproducible.
void write_torch_archive(const std::string& path, const std::string& data_pkl,
                         const std::vector<TorchStorageData>& storages);

}  // namespace oscar::io
