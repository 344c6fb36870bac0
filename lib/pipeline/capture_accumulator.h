// Accumulation of captured activations on one background thread, so that the forward runs on while the
// float64 statistics of the previous layer are added. Plain C++ (HostTensor in, no LibTorch).
//
// Why a thread of its own, besides the overlap: the accumulators' temporaries and their small long-lived
// allocations (chunk sets), made between LibTorch's multi-megabyte temporaries in the same malloc arena,
// fragmented the heap so that every layer's temporaries landed on fresh pages (measured on Qwen3-0.6B
// geometry, 1,024 tokens: 645k page faults and +2.6 GB of heap during calibration, capture overhead +34-60%).
// Chunks are accumulated strictly in the order they were pushed, so the sums are the same bits as a serial
// accumulation with the same kernels; those are Eigen's (linalg::GramKernels::kEigen), because OpenBLAS's
// thread count is process-wide and LibTorch's matmuls use the same OpenBLAS at the same time.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "calib/calibration_state.h"
#include "core/host_tensor.h"
#include "io/hdf5_dump.h"

namespace oscar::pipeline {

enum class CapturePass { kFirst, kSecond };

/// One layer of one sequence: query may be empty in the second pass (sst reads k and v only).
struct CapturedChunk {
  int layer = 0;
  int chunk_id = 0;
  HostTensor query, key, value;
};

class CaptureAccumulator {
 public:
  /// Adds into `state` (which the caller must not touch until drain() returned); in the first pass also
  /// appends every chunk to `dump` when given. At most `max_pending_bytes` of chunks wait at once (one chunk
  /// always may), which bounds the memory the overlap costs.
  CaptureAccumulator(calib::CalibrationState& state, io::Hdf5DumpWriter* dump, std::size_t max_pending_bytes);
  /// Waits for the queued chunks, then stops the thread (errors at that point are dropped: call drain()).
  ~CaptureAccumulator();
  CaptureAccumulator(const CaptureAccumulator&) = delete;
  CaptureAccumulator& operator=(const CaptureAccumulator&) = delete;

  /// Queues a chunk; blocks while the queue is full. Rethrows an error of an earlier chunk.
  void push(CapturedChunk chunk);
  /// Waits until every queued chunk is added; rethrows the first error a chunk raised.
  void drain();
  /// Which sums the following chunks go to. Only between passes (drains first).
  void start_pass(CapturePass pass);

 private:
  void run();
  void accumulate(const CapturedChunk& chunk);
  void rethrow_error();

  calib::CalibrationState& state_;
  io::Hdf5DumpWriter* dump_;
  const std::size_t max_pending_bytes_;
  CapturePass pass_ = CapturePass::kFirst;

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<CapturedChunk> queue_;
  std::size_t pending_bytes_ = 0;
  bool busy_ = false;
  bool stopping_ = false;
  std::exception_ptr error_;
  std::thread worker_;  // last: started once everything above exists
};

}  // namespace oscar::pipeline
