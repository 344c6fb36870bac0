// Support shared by the io tests: temporary directories, whole-file bytes, running the Debian python (with
// torch and h5py) on our helper scripts, and synthetic SGLang dumps made by tests/python/make_synthetic_dump.py
// at test time (no binary fixtures in the repository).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <functional>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "io/zip_archive.h"

namespace oscar::test {

/// The message of the oscar::InputError `action` throws; a test failure (and "") when it throws nothing.
inline std::string input_error_message(const std::function<void()>& action) {
  try {
    action();
  } catch (const InputError& error) {
    return error.what();
  }
  ADD_FAILURE() << "expected oscar::InputError";
  return "";
}

/// EXPECTs that `action` throws a one-line InputError whose message starts with `prefix` (the path, maybe a
/// line) and contains `also`.
inline void expect_input_error_with_prefix(const std::function<void()>& action, const std::string& prefix,
                                           const std::string& also = "") {
  const std::string message = input_error_message(action);
  EXPECT_EQ(message.rfind(prefix, 0), 0U) << message;
  EXPECT_NE(message.find(also), std::string::npos) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << "one-line message: " << message;
}

/// A fresh directory under $TMPDIR, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "oscar-test-XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

/// The bytes of record "<root>/<name>" of a torch.save file.
inline std::vector<std::uint8_t> read_torch_record(const std::string& path, const std::string& name) {
  const io::TorchArchive archive(path);
  return archive.zip().read(archive.record(name));
}

inline std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

/// Runs a shell command; returns its exit status (-1 if it did not exit normally).
inline int run_command(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

struct PythonRun {
  int status = -1;     ///< exit status, -1 if python did not exit normally
  std::string output;  ///< stdout and stderr together, for failure messages
};

/// Runs tests/python/torch_roundtrip.py with the Debian python; argv[1:] = args.
inline PythonRun run_torch_roundtrip(const std::vector<std::string>& args) {
  std::string command = std::string(OSCAR_SYSTEM_PYTHON) + " " +
                        shell_quote(std::string(OSCAR_SOURCE_DIR) + "/tests/python/torch_roundtrip.py");
  for (const std::string& arg : args) command += " " + shell_quote(arg);
  command += " 2>&1";
  PythonRun run;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return run;
  char buffer[4096];
  while (std::size_t got = std::fread(buffer, 1, sizeof buffer, pipe)) run.output.append(buffer, got);
  const int status = ::pclose(pipe);
  run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

/// Runs a python program (written to a file next to the data it works on) with the Debian python that has
/// torch and h5py; argv[1:] = args. Returns the exit status; python's own output goes to the test log.
inline int run_python(const TempDir& scratch, const std::string& program, const std::vector<std::string>& args = {}) {
  static int counter = 0;
  const std::string script = scratch / ("script_" + std::to_string(counter++) + ".py");
  std::ofstream(script) << program;
  std::string command = std::string(OSCAR_SYSTEM_PYTHON) + " " + shell_quote(script);
  for (const std::string& arg : args) command += " " + shell_quote(arg);
  return run_command(command);
}

/// make_synthetic_dump.py OUT_DIR <options>; throws if the script fails.
inline void make_synthetic_dump(const std::string& out_dir, const std::string& options = "") {
  const std::string command = std::string(OSCAR_SYSTEM_PYTHON) + " " +
                              shell_quote(std::string(OSCAR_SOURCE_DIR) + "/tests/python/make_synthetic_dump.py") +
                              " " + shell_quote(out_dir) + " " + options;
  if (run_command(command) != 0) throw std::runtime_error("make_synthetic_dump.py failed: " + command);
}

/// One line of the script's --reference file: what python saved for one tensor.
struct ReferenceTensor {
  int layer = 0;
  int chunk = 0;
  std::string projection;
  std::vector<std::int64_t> shape;
  double sum = 0;      ///< float64 sum of the saved (cast) values, NaN ignored
  double abs_sum = 0;
  std::vector<double> first_values;  ///< up to 4
};

inline std::vector<ReferenceTensor> read_reference(const std::string& path) {
  std::vector<ReferenceTensor> entries;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    ReferenceTensor entry;
    std::string shape_text;
    fields >> entry.layer >> entry.chunk >> entry.projection >> shape_text >> entry.sum >> entry.abs_sum;
    std::istringstream shape_fields(shape_text);
    for (std::string dim; std::getline(shape_fields, dim, ',');) entry.shape.push_back(std::stoll(dim));
    std::string value;  // python writes repr(): "nan" must not stop the stream
    while (fields >> value) entry.first_values.push_back(std::strtod(value.c_str(), nullptr));
    entries.push_back(entry);
  }
  return entries;
}

inline void write_text_file(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

}  // namespace oscar::test
