// Test support: temporary directories, running the Debian python, and synthetic SGLang dumps made by
// tests/python/make_synthetic_dump.py at test time (no binary fixtures in the repository).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace oscar::test {

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
