// A one-line progress bar on stderr with throughput, redrawn at most every 100 ms. When stderr is not a
// terminal (CI logs, pipes) it prints a plain line every 10% instead of carriage returns.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>

namespace oscar {

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled), interactive_(isatty(fileno(stderr))) {}

  /// done of total steps; rate_count/"rate_unit" gives the speed shown (e.g. tokens); label is free text.
  void update(std::int64_t done, std::int64_t total, std::int64_t rate_count, const char* rate_unit,
              const std::string& label) {
    if (!enabled_ || total <= 0) return;
    const auto now = Clock::now();
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const int percent = int(100 * done / total);
    if (interactive_) {
      if (done < total && now - last_draw_ < std::chrono::milliseconds(100)) return;
      last_draw_ = now;
      const int width = 30, filled = int(width * done / total);
      std::fprintf(stderr, "\r[%s%s] %3d%% %s  %.0f %s/s   ", std::string(std::size_t(filled), '#').c_str(),
                   std::string(std::size_t(width - filled), ' ').c_str(), percent, label.c_str(),
                   seconds > 0 ? double(rate_count) / seconds : 0.0, rate_unit);
      if (done == total) std::fputc('\n', stderr);
    } else if (percent >= next_percent_ || done == total) {
      next_percent_ = percent / 10 * 10 + 10;
      std::fprintf(stderr, "progress %3d%% %s  %.0f %s/s\n", percent, label.c_str(),
                   seconds > 0 ? double(rate_count) / seconds : 0.0, rate_unit);
    }
    std::fflush(stderr);
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool enabled_;
  bool interactive_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_draw_{};
  int next_percent_ = 0;
};

}  // namespace oscar
