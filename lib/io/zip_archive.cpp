#include "io/zip_archive.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <iomanip>
#include <sstream>
#include <stdexcept>
#include <unordered_set>

#include "core/error.h"

namespace oscar::io {

// Storages are raw little-endian element bytes, copied as they are into and out of memory.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "torch storages are read and written as host memory");

namespace {

constexpr std::uint32_t kLocalHeaderSignature = 0x04034b50;
constexpr std::uint32_t kCentralHeaderSignature = 0x02014b50;
constexpr std::uint32_t kEndSignature = 0x06054b50;
constexpr std::uint32_t kZip64EndSignature = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr std::uint32_t kDataDescriptorSignature = 0x08074b50;

constexpr std::size_t kLocalHeaderSize = 30;
constexpr std::size_t kCentralHeaderSize = 46;
constexpr std::size_t kEndSize = 22;
constexpr std::size_t kZip64EndSize = 56;
constexpr std::size_t kZip64LocatorSize = 20;
constexpr std::size_t kMaxComment = 0xffff;
constexpr std::uint16_t kZip64ExtraId = 0x0001;
constexpr std::uint32_t kSentinel32 = 0xffffffffu;

constexpr std::uint16_t kFlagEncrypted = 0x0001;
constexpr std::uint16_t kFlagDataDescriptor = 0x0008;
constexpr std::uint16_t kFlagUtf8 = 0x0800;

constexpr std::uint64_t kDataAlignment = 64;            // PyTorch's kFieldAlignment
constexpr std::size_t kReadChunk = std::size_t(16) << 20;  // CRC and pread granularity
constexpr std::size_t kWriteBuffer = std::size_t(1) << 20;
constexpr std::uint64_t kMaxPickleBytes = std::uint64_t(64) << 20;

std::uint64_t load_le(const std::uint8_t* p, int bytes) {
  std::uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}
std::uint16_t le16(const std::uint8_t* p) { return std::uint16_t(load_le(p, 2)); }
std::uint32_t le32(const std::uint8_t* p) { return std::uint32_t(load_le(p, 4)); }
std::uint64_t le64(const std::uint8_t* p) { return load_le(p, 8); }

void append_le(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out += char((value >> (8 * i)) & 0xff);
}

// end - begin >= count without overflow.
bool fits(std::uint64_t begin, std::uint64_t count, std::uint64_t end) { return begin <= end && count <= end - begin; }

std::uint32_t crc32_update(std::uint32_t crc, const void* data, std::size_t size) {
  const auto* bytes = static_cast<const Bytef*>(data);
  uLong value = crc;
  while (size > 0) {
    const std::size_t chunk = std::min(size, kReadChunk);
    value = ::crc32(value, bytes, uInt(chunk));
    bytes += chunk;
    size -= chunk;
  }
  return std::uint32_t(value);
}

std::string errno_text() { return std::strerror(errno); }

std::string in_quotes(std::string_view name) { return "'" + std::string(name) + "'"; }

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// ZipReader
// ---------------------------------------------------------------------------------------------------------

ZipReader::ZipReader(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) fail("cannot open (" + errno_text() + ")");
  struct stat info;
  if (::fstat(fd_, &info) != 0) {
    const std::string reason = errno_text();
    ::close(fd_);
    fd_ = -1;
    fail("cannot stat (" + reason + ")");
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    fail("not a regular file");
  }
  file_size_ = std::uint64_t(info.st_size);
  try {
    parse_central_directory();
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

ZipReader::~ZipReader() {
  if (fd_ >= 0) ::close(fd_);
}

void ZipReader::fail(const std::string& problem) const { throw InputError(path_ + ": " + problem); }

void ZipReader::pread_exact(std::uint64_t offset, std::size_t count, void* out) const {
  auto* bytes = static_cast<std::uint8_t*>(out);
  while (count > 0) {
    const std::size_t chunk = std::min(count, kReadChunk);
    const ssize_t got = ::pread(fd_, bytes, chunk, off_t(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      fail("read error (" + errno_text() + ")");
    }
    if (got == 0) fail("unexpected end of file (truncated?)");
    bytes += got;
    offset += std::uint64_t(got);
    count -= std::size_t(got);
  }
}

const ZipEntry* ZipReader::find(std::string_view name) const {
  const auto found = index_.find(std::string(name));
  return found == index_.end() ? nullptr : &entries_[found->second];
}

// The classic and, when present, zip64 end-of-central-directory facts the reader needs.
struct ZipReader::CentralDirectory {
  std::uint64_t entry_count = 0;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  std::uint64_t end = 0;  // where the end records begin: the directory must lie before it
};

// The end record sits in the last 22 + comment bytes; scan back for its signature.
ZipReader::CentralDirectory ZipReader::find_central_directory() const {
  if (file_size_ < kEndSize) fail("not a zip archive (file too small)");
  const std::size_t tail_size = std::size_t(std::min<std::uint64_t>(file_size_, kEndSize + kMaxComment));
  const std::uint64_t tail_offset = file_size_ - tail_size;
  std::vector<std::uint8_t> tail(tail_size);
  pread_exact(tail_offset, tail_size, tail.data());
  std::size_t end_pos = std::string::npos;
  for (std::size_t pos = tail_size - kEndSize + 1; pos-- > 0;) {
    if (le32(&tail[pos]) == kEndSignature && pos + kEndSize + le16(&tail[pos + 20]) <= tail_size) {
      end_pos = pos;
      break;
    }
  }
  if (end_pos == std::string::npos) fail("not a zip archive (no end-of-central-directory record)");
  const std::uint8_t* end = &tail[end_pos];
  if (le16(end + 4) != 0 || le16(end + 6) != 0) fail("multi-disk zip archives are not supported");

  CentralDirectory directory;
  directory.entry_count = le16(end + 10);
  directory.size = le32(end + 12);
  directory.offset = le32(end + 16);
  directory.end = tail_offset + end_pos;
  read_zip64_end(&directory);
  if (!fits(directory.offset, directory.size, directory.end)) fail("central directory lies outside the file");
  if (directory.entry_count > directory.size / kCentralHeaderSize) fail("central directory too small for its entry count");
  return directory;
}

// A zip64 locator right before the end record points at the zip64 end record, whose 64-bit fields replace
// the classic ones.
void ZipReader::read_zip64_end(CentralDirectory* directory) const {
  if (directory->end < kZip64LocatorSize) return;
  std::uint8_t locator[kZip64LocatorSize];
  pread_exact(directory->end - kZip64LocatorSize, kZip64LocatorSize, locator);
  if (le32(locator) != kZip64LocatorSignature) return;
  const std::uint64_t zip64_end_offset = le64(locator + 8);
  if (!fits(zip64_end_offset, kZip64EndSize, directory->end - kZip64LocatorSize)) {
    fail("zip64 end record lies outside the file");
  }
  std::uint8_t zip64_end[kZip64EndSize];
  pread_exact(zip64_end_offset, kZip64EndSize, zip64_end);
  if (le32(zip64_end) != kZip64EndSignature) fail("bad zip64 end-of-central-directory signature");
  directory->entry_count = le64(zip64_end + 32);
  directory->size = le64(zip64_end + 40);
  directory->offset = le64(zip64_end + 48);
  directory->end = zip64_end_offset;
}

void ZipReader::parse_central_directory() {
  const CentralDirectory directory = find_central_directory();
  std::vector<std::uint8_t> central(std::size_t(directory.size));
  pread_exact(directory.offset, central.size(), central.data());

  std::size_t pos = 0;
  entries_.reserve(std::size_t(directory.entry_count));
  for (std::uint64_t i = 0; i < directory.entry_count; ++i) {
    std::size_t header_size = 0;
    ZipEntry entry = parse_central_entry(central.data() + pos, central.size() - pos, &header_size);
    if (!index_.emplace(entry.name, entries_.size()).second) fail("duplicate entry " + in_quotes(entry.name));
    entries_.push_back(std::move(entry));
    pos += header_size;
  }
  for (ZipEntry& entry : entries_) locate_data(&entry, directory.offset);
}

// One central directory header, of at most `available` bytes; *header_size receives the bytes it spans.
ZipEntry ZipReader::parse_central_entry(const std::uint8_t* header, std::size_t available, std::size_t* header_size) const {
  if (available < kCentralHeaderSize) fail("central directory truncated");
  if (le32(header) != kCentralHeaderSignature) fail("bad central directory entry signature");
  const std::uint16_t flags = le16(header + 8);
  const std::uint16_t method = le16(header + 10);
  const std::size_t name_length = le16(header + 28);
  const std::size_t extra_length = le16(header + 30);
  const std::size_t comment_length = le16(header + 32);
  if (!fits(kCentralHeaderSize, name_length + extra_length + comment_length, available)) {
    fail("central directory entry runs past the directory");
  }
  ZipEntry entry;
  entry.name.assign(reinterpret_cast<const char*>(header + kCentralHeaderSize), name_length);
  entry.crc32 = le32(header + 16);
  std::uint64_t compressed_size = le32(header + 20);
  std::uint64_t size = le32(header + 24);
  entry.header_offset = le32(header + 42);

  if (flags & kFlagEncrypted) fail("entry " + in_quotes(entry.name) + " is encrypted");
  if (method != 0) {
    fail("entry " + in_quotes(entry.name) + " is compressed (method " + std::to_string(method) +
         "); only stored entries are supported");
  }
  read_zip64_extra(entry.name, header + kCentralHeaderSize + name_length, extra_length,
                   {&size, &compressed_size, &entry.header_offset});
  if (compressed_size != size) fail("entry " + in_quotes(entry.name) + ": stored entry with differing sizes");
  entry.size = size;
  *header_size = kCentralHeaderSize + name_length + extra_length + comment_length;
  return entry;
}

// Fields saturated at 0xffffffff continue, in the order given, in the zip64 extra field.
void ZipReader::read_zip64_extra(const std::string& name, const std::uint8_t* extra, std::size_t extra_length,
                                 std::initializer_list<std::uint64_t*> fields) const {
  for (std::size_t at = 0; at + 4 <= extra_length;) {
    const std::uint16_t id = le16(extra + at);
    const std::size_t length = le16(extra + at + 2);
    if (at + 4 + length > extra_length) fail("entry " + in_quotes(name) + ": extra field runs past its header");
    if (id == kZip64ExtraId) {
      const std::uint8_t* field = extra + at + 4;
      std::size_t used = 0;
      for (std::uint64_t* value : fields) {
        if (*value != kSentinel32) continue;
        if (used + 8 > length) fail("entry " + in_quotes(name) + ": zip64 extra field too short");
        *value = le64(field + used);
        used += 8;
      }
    }
    at += 4 + length;
  }
}

// Reads an entry's local header: its name and extra field lengths decide where the data starts.
void ZipReader::locate_data(ZipEntry* entry, std::uint64_t data_limit) {
  const std::string where = "entry " + in_quotes(entry->name);
  if (!fits(entry->header_offset, kLocalHeaderSize + entry->name.size(), data_limit)) {
    fail(where + ": local header lies outside the file");
  }
  std::vector<std::uint8_t> header(kLocalHeaderSize + entry->name.size());
  pread_exact(entry->header_offset, header.size(), header.data());
  if (le32(header.data()) != kLocalHeaderSignature) fail(where + ": bad local header signature");
  if (le16(&header[8]) != 0) fail(where + ": local header is not a stored entry");
  const std::size_t name_length = le16(&header[26]);
  const std::size_t extra_length = le16(&header[28]);
  if (name_length != entry->name.size() ||
      std::memcmp(&header[kLocalHeaderSize], entry->name.data(), name_length) != 0) {
    fail(where + ": local header names a different file");
  }
  entry->data_offset = entry->header_offset + kLocalHeaderSize + name_length + extra_length;
  if (!fits(entry->data_offset, entry->size, data_limit)) fail(where + ": data runs past the end of the file");
}

void ZipReader::read_into(const ZipEntry& entry, void* out) const {
  auto* bytes = static_cast<std::uint8_t*>(out);
  std::uint32_t crc = 0;
  for (std::uint64_t done = 0; done < entry.size;) {
    const std::size_t chunk = std::size_t(std::min<std::uint64_t>(entry.size - done, kReadChunk));
    pread_exact(entry.data_offset + done, chunk, bytes + done);
    crc = crc32_update(crc, bytes + done, chunk);
    done += chunk;
  }
  if (crc != entry.crc32) fail("entry " + in_quotes(entry.name) + ": CRC-32 mismatch (corrupt file)");
}

std::vector<std::uint8_t> ZipReader::read(const ZipEntry& entry) const {
  std::vector<std::uint8_t> bytes(std::size_t(entry.size));
  read_into(entry, bytes.data());
  return bytes;
}

void ZipReader::read_range(const ZipEntry& entry, std::uint64_t offset, std::uint64_t count, void* out) const {
  if (!fits(offset, count, entry.size)) fail("entry " + in_quotes(entry.name) + ": read past its end");
  pread_exact(entry.data_offset + offset, std::size_t(count), out);
}

// ---------------------------------------------------------------------------------------------------------
// TorchArchive
// ---------------------------------------------------------------------------------------------------------

TorchArchive::TorchArchive(const std::string& path) : zip_(path) {
  // Like PyTorchStreamReader: the root is the folder of the first entry.
  if (zip_.entries().empty()) zip_.fail("empty zip archive, not a torch.save file");
  const std::string& first = zip_.entries().front().name;
  const std::size_t slash = first.find('/');
  if (slash == std::string::npos) zip_.fail("not a torch.save file (record " + in_quotes(first) + " outside a folder)");
  root_ = first.substr(0, slash);
}

const ZipEntry* TorchArchive::find_record(std::string_view name) const {
  std::string full_name = root_;
  full_name += '/';
  full_name += name;
  return zip_.find(full_name);
}

const ZipEntry& TorchArchive::record(std::string_view name) const {
  const ZipEntry* entry = find_record(name);
  if (!entry) zip_.fail("missing record " + in_quotes(name) + " (not a torch.save file?)");
  return *entry;
}

pickle::ValuePtr TorchArchive::load_pickle() const {
  const ZipEntry& entry = record("data.pkl");
  if (entry.size > kMaxPickleBytes) zip_.fail("data.pkl is implausibly large (" + std::to_string(entry.size) + " bytes)");
  const std::vector<std::uint8_t> bytes = zip_.read(entry);
  return pickle::unpickle(bytes.data(), bytes.size(), path() + ": data.pkl");
}

namespace {

// Where a tensor's bytes lie inside its storage record.
struct TensorExtent {
  const ZipEntry* record = nullptr;
  std::int64_t numel = 0;
  std::uint64_t byte_offset = 0;
  std::uint64_t byte_count = 0;
};

std::string join_numbers(const std::vector<std::int64_t>& numbers) {
  std::string text;
  for (std::size_t i = 0; i < numbers.size(); ++i) text += (i ? ", " : "") + std::to_string(numbers[i]);
  return text;
}

TensorExtent tensor_extent(const TorchArchive& archive, const pickle::TensorRef& tensor, const std::string& what) {
  auto fail = [&](const std::string& problem) { archive.zip().fail(what + ": " + problem); };
  const std::uint64_t element_size = dtype_size(tensor.dtype());
  // Sizes are bounded by the file, so anything near 2^62 bytes is garbage; checking early avoids overflow.
  constexpr std::uint64_t kMaxBytes = std::uint64_t(1) << 62;
  TensorExtent extent;
  std::uint64_t numel = 1;
  for (std::int64_t size : tensor.shape) {
    if (size < 0) fail("negative size in shape " + shape_string(tensor.shape));
    if (size != 0 && numel > kMaxBytes / element_size / std::uint64_t(size)) fail("shape " + shape_string(tensor.shape) + " is too large");
    numel *= std::uint64_t(size);
  }
  extent.numel = std::int64_t(numel);

  // C-contiguous, with PyTorch's leniency: strides of size-1 dimensions (and of empty tensors) don't matter.
  if (tensor.stride.size() != tensor.shape.size()) fail("stride and shape differ in length");
  if (numel > 0) {
    const std::vector<std::int64_t> expected = pickle::TensorRef::contiguous_stride(tensor.shape);
    for (std::size_t i = 0; i < tensor.shape.size(); ++i) {
      if (tensor.shape[i] != 1 && tensor.stride[i] != expected[i]) {
        fail("not C-contiguous (shape " + shape_string(tensor.shape) + ", stride (" + join_numbers(tensor.stride) + "))");
      }
    }
  }

  const std::uint64_t offset = std::uint64_t(tensor.storage_offset);
  if (tensor.storage_offset < 0 || offset > kMaxBytes / element_size) fail("bad storage offset " + std::to_string(tensor.storage_offset));
  const std::uint64_t storage_numel = std::uint64_t(tensor.storage.numel);
  if (offset + numel > storage_numel) {
    fail("needs elements up to " + std::to_string(offset + numel) + " of a storage of " + std::to_string(storage_numel));
  }
  extent.byte_offset = offset * element_size;
  extent.byte_count = numel * element_size;
  extent.record = archive.find_record("data/" + tensor.storage.key);
  if (!extent.record) fail("missing storage record " + in_quotes("data/" + tensor.storage.key));
  if (extent.record->size < extent.byte_offset + extent.byte_count) {
    fail("storage record " + in_quotes("data/" + tensor.storage.key) + " has " + std::to_string(extent.record->size) +
         " bytes, needs " + std::to_string(extent.byte_offset + extent.byte_count));
  }
  return extent;
}

}  // namespace

void TorchArchive::check_tensor(const pickle::TensorRef& tensor, const std::string& what) const {
  tensor_extent(*this, tensor, what);
}

HostTensor TorchArchive::load_tensor(const pickle::TensorRef& tensor, const std::string& what) const {
  const TensorExtent extent = tensor_extent(*this, tensor, what);
  HostTensor result;
  result.dtype = tensor.dtype();
  result.shape = tensor.shape;
  result.bytes.resize(std::size_t(extent.byte_count));
  if (extent.byte_count == 0) return result;
  if (extent.byte_offset == 0 && extent.byte_count == extent.record->size) {
    zip_.read_into(*extent.record, result.bytes.data());  // the usual case: the tensor is its whole storage
  } else {
    // A view: the CRC covers the whole record, so read it all and keep the slice.
    const std::vector<std::uint8_t> storage = zip_.read(*extent.record);
    std::memcpy(result.bytes.data(), storage.data() + extent.byte_offset, std::size_t(extent.byte_count));
  }
  return result;
}

std::string torch_archive_root(const std::string& path) {
  // PyTorchStreamWriter's basename(): strip directories, then the last extension.
  const std::size_t slash = path.find_last_of("/\\");
  const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  const std::size_t dot = name.rfind('.');
  const std::string stem = dot == std::string::npos ? name : name.substr(0, dot);
  return stem.empty() ? "archive" : stem;
}

// ---------------------------------------------------------------------------------------------------------
// ZipWriter
// ---------------------------------------------------------------------------------------------------------

ZipWriter::ZipWriter(const std::string& path) : path_(path) {
  // A unique sibling name; O_EXCL makes concurrent writers safe and the umask applies as for any new file.
  static std::atomic<unsigned> counter{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp_path_ = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    fd_ = ::open(temp_path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0 || errno != EEXIST) break;
  }
  if (fd_ < 0) fail_io("cannot create a temporary file beside it (" + errno_text() + ")");
}

ZipWriter::~ZipWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) ::unlink(temp_path_.c_str());
}

void ZipWriter::fail_io(const std::string& what) const { throw std::runtime_error(path_ + ": " + what); }

void ZipWriter::flush_buffer() {
  const char* data = buffer_.data();
  std::size_t left = buffer_.size();
  while (left > 0) {
    const ssize_t written = ::write(fd_, data, left);
    if (written < 0) {
      if (errno == EINTR) continue;
      fail_io("write failed (" + errno_text() + ")");
    }
    data += written;
    left -= std::size_t(written);
  }
  buffer_.clear();
}

void ZipWriter::write_bytes(const void* data, std::size_t size) {
  offset_ += size;
  if (buffer_.size() + size <= kWriteBuffer) {
    buffer_.append(static_cast<const char*>(data), size);
    return;
  }
  flush_buffer();
  if (size <= kWriteBuffer) {
    buffer_.append(static_cast<const char*>(data), size);
    return;
  }
  // Large storages go straight to the file.
  const auto* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t written = ::write(fd_, bytes, std::min(size, kReadChunk));
    if (written < 0) {
      if (errno == EINTR) continue;
      fail_io("write failed (" + errno_text() + ")");
    }
    bytes += written;
    size -= std::size_t(written);
  }
}

std::uint32_t ZipWriter::add(const std::string& name, const void* data, std::size_t size) {
  if (finished_) throw std::logic_error("ZipWriter::add after finish");
  if (name.size() > 0xffff) throw std::invalid_argument("zip entry name too long");
  // Past 4 GiB miniz switches to zip64 extra fields; nothing we write comes near that.
  if (offset_ + kLocalHeaderSize + name.size() + 4 + kDataAlignment + size + 16 >= kSentinel32) {
    fail_io("archives of 4 GiB or more are not supported");
  }
  const std::uint32_t header_offset = std::uint32_t(offset_);
  const std::uint32_t crc = crc32_update(0, data, size);
  // miniz announces a data descriptor only for non-empty data, and writes one only then.
  const std::uint16_t flags = std::uint16_t(kFlagUtf8 | (size > 0 ? kFlagDataDescriptor : 0));

  // PyTorch's getPadding(): an "FB" extra field whose 'Z' bytes push the data to a 64-byte boundary.
  const std::uint64_t data_start = offset_ + kLocalHeaderSize + name.size() + 4;
  const std::size_t padding = std::size_t((kDataAlignment - data_start % kDataAlignment) % kDataAlignment);

  std::string header;
  append_le(header, kLocalHeaderSignature, 4);
  append_le(header, 0, 2);  // version needed: miniz writes 0 for stored entries
  append_le(header, flags, 2);
  append_le(header, 0, 2);  // method: stored
  append_le(header, 0, 4);  // DOS time and date: zero
  append_le(header, 0, 4);  // CRC and sizes follow in the data descriptor
  append_le(header, 0, 4);
  append_le(header, 0, 4);
  append_le(header, name.size(), 2);
  append_le(header, 4 + padding, 2);
  header += name;
  header += "FB";
  append_le(header, padding, 2);
  header.append(padding, 'Z');
  write_bytes(header.data(), header.size());
  write_bytes(data, size);

  if (size > 0) {
    std::string descriptor;
    append_le(descriptor, kDataDescriptorSignature, 4);
    append_le(descriptor, crc, 4);
    append_le(descriptor, size, 4);
    append_le(descriptor, size, 4);
    write_bytes(descriptor.data(), descriptor.size());
  }
  central_.push_back({name, crc, std::uint32_t(size), header_offset, flags});
  return crc;
}

void ZipWriter::finish() {
  if (finished_) throw std::logic_error("ZipWriter::finish twice");
  const std::uint64_t directory_offset = offset_;
  std::string tail;
  for (const CentralEntry& entry : central_) {
    append_le(tail, kCentralHeaderSignature, 4);
    append_le(tail, 0, 2);  // version made by
    append_le(tail, 0, 2);  // version needed
    append_le(tail, entry.flags, 2);
    append_le(tail, 0, 2);  // method
    append_le(tail, 0, 4);  // time, date
    append_le(tail, entry.crc32, 4);
    append_le(tail, entry.size, 4);
    append_le(tail, entry.size, 4);
    append_le(tail, entry.name.size(), 2);
    append_le(tail, 0, 2);  // extra
    append_le(tail, 0, 2);  // comment
    append_le(tail, 0, 2);  // disk
    append_le(tail, 0, 2);  // internal attributes
    append_le(tail, 0, 4);  // external attributes
    append_le(tail, entry.header_offset, 4);
    tail += entry.name;
  }
  const std::uint64_t directory_size = tail.size();
  const std::uint64_t zip64_end_offset = directory_offset + directory_size;
  if (zip64_end_offset + kZip64EndSize + kZip64LocatorSize + kEndSize >= kSentinel32) {
    fail_io("archives of 4 GiB or more are not supported");
  }
  const std::uint64_t count = central_.size();

  // PyTorch opens its writer in zip64 mode, so the zip64 end record and locator are always present.
  append_le(tail, kZip64EndSignature, 4);
  append_le(tail, kZip64EndSize - 12, 8);
  append_le(tail, 0x031e, 2);  // made by: Unix, spec 3.0 (miniz's constant)
  append_le(tail, 0x002d, 2);  // needed: 4.5 (zip64)
  append_le(tail, 0, 4);
  append_le(tail, 0, 4);
  append_le(tail, count, 8);
  append_le(tail, count, 8);
  append_le(tail, directory_size, 8);
  append_le(tail, directory_offset, 8);

  append_le(tail, kZip64LocatorSignature, 4);
  append_le(tail, 0, 4);
  append_le(tail, zip64_end_offset, 8);
  append_le(tail, 1, 4);  // total disks

  append_le(tail, kEndSignature, 4);
  append_le(tail, 0, 2);
  append_le(tail, 0, 2);
  append_le(tail, std::min<std::uint64_t>(count, 0xffff), 2);
  append_le(tail, std::min<std::uint64_t>(count, 0xffff), 2);
  append_le(tail, directory_size, 4);
  append_le(tail, directory_offset, 4);
  append_le(tail, 0, 2);  // comment length
  write_bytes(tail.data(), tail.size());
  flush_buffer();

  if (::fsync(fd_) != 0) fail_io("fsync failed (" + errno_text() + ")");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail_io("close failed (" + errno_text() + ")");
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) fail_io("cannot rename the temporary file into place (" + errno_text() + ")");
  finished_ = true;
}

// ---------------------------------------------------------------------------------------------------------
// torch.save archives
// ---------------------------------------------------------------------------------------------------------

namespace {

// c10::hash_combine, as PyTorch combines record-name hashes and CRCs into the serialization id.
std::uint64_t hash_combine(std::uint64_t seed, std::uint64_t value) {
  return seed ^ (value + 0x9e3779b9 + (seed << 6) + (seed >> 2));
}

// PyTorchStreamWriter::writeSerializationId(): 20 digits of the combined std::hash of the record names,
// iterated in std::unordered_set order, then 20 digits of the combined CRC-32s of the non-empty records
// (those with a data descriptor). Iteration order and std::hash are libstdc++'s, as in Linux PyTorch
// builds: with them this reproduces the ids of the reference zoo files exactly.
std::string serialization_id(const std::vector<std::string>& record_names, std::uint64_t combined_crc) {
  std::unordered_set<std::string> written;
  for (const std::string& name : record_names) written.insert(name);
  std::uint64_t combined_name_hash = 0;
  for (const std::string& name : written) combined_name_hash = hash_combine(combined_name_hash, std::hash<std::string>{}(name));
  std::ostringstream id;
  id << std::setfill('0') << std::setw(20) << combined_name_hash << std::setfill('0') << std::setw(20) << combined_crc;
  return id.str();
}

}  // namespace

void write_torch_archive(const std::string& path, const std::string& data_pkl,
                         const std::vector<TorchStorageData>& storages) {
  ZipWriter zip(path);
  const std::string prefix = torch_archive_root(path) + "/";
  std::vector<std::string> record_names;
  std::unordered_set<std::string> seen_names;
  std::uint64_t combined_crc = 0;
  auto add = [&](const std::string& name, const void* data, std::size_t size) {
    if (!seen_names.insert(name).second) throw std::invalid_argument("torch archive: record '" + name + "' written twice");
    const std::uint32_t crc = zip.add(prefix + name, data, size);
    if (size > 0) combined_crc = hash_combine(combined_crc, crc);
    record_names.push_back(name);
  };
  auto add_text = [&](const std::string& name, const std::string& text) { add(name, text.data(), text.size()); };

  // The order of torch.save in PyTorch 2.x (serialization.py _save, then writeEndOfFile).
  add_text("data.pkl", data_pkl);
  add_text(".format_version", "1");
  add_text(".storage_alignment", "64");
  add_text("byteorder", "little");
  for (const TorchStorageData& storage : storages) add("data/" + storage.key, storage.data, storage.size);
  add_text("version", "3\n");
  add_text(".data/serialization_id", serialization_id(record_names, combined_crc));
  zip.finish();
}

}  // namespace oscar::io
