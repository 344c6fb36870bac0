// Elapsed wall-clock time on the steady clock, for run records, log lines and benchmark figures.
#pragma once

#include <chrono>

namespace oscar {

class Stopwatch {
 public:
  /// Seconds since construction.
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace oscar
