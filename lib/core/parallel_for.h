// A static parallel loop: index i runs on thread i % threads, so which thread computes what never
// depends on timing and results stay bit-identical for every thread count.
#pragma once

#include <exception>
#include <functional>
#include <thread>
#include <vector>

namespace oscar {

/// Runs body(i) for i in [0, count). If bodies throw, the exception of the lowest index is rethrown
/// after every thread has finished (deterministic error messages).
inline void parallel_for(int count, int threads, const std::function<void(int)>& body) {
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(count));
  const auto run_stride = [&](int first, int stride) {
    for (int i = first; i < count; i += stride) {
      try {
        body(i);
      } catch (...) {
        errors[static_cast<std::size_t>(i)] = std::current_exception();
      }
    }
  };
  const int workers = threads < 1 ? 1 : (threads > count ? count : threads);
  if (workers <= 1) {
    run_stride(0, 1);
  } else {
    std::vector<std::thread> pool;
    for (int t = 1; t < workers; ++t) pool.emplace_back(run_stride, t, workers);
    run_stride(0, workers);
    for (auto& thread : pool) thread.join();
  }
  for (const auto& error : errors) {
    if (error) std::rethrow_exception(error);
  }
}

}  // namespace oscar
