#include "pipeline/capture_accumulator.h"

#include "calib/chunk_accumulation.h"

namespace oscar::pipeline {
namespace {

std::size_t chunk_bytes(const CapturedChunk& chunk) {
  return chunk.query.bytes.size() + chunk.key.bytes.size() + chunk.value.bytes.size();
}

}  // namespace

CaptureAccumulator::CaptureAccumulator(calib::CalibrationState& state, io::Hdf5DumpWriter* dump,
                                       std::size_t max_pending_bytes)
    : state_(state), dump_(dump), max_pending_bytes_(max_pending_bytes), worker_([this] { run(); }) {}

CaptureAccumulator::~CaptureAccumulator() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void CaptureAccumulator::rethrow_error() {
  if (error_) std::rethrow_exception(error_);
}

void CaptureAccumulator::push(CapturedChunk chunk) {
  const std::size_t bytes = chunk_bytes(chunk);
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return error_ || queue_.empty() || pending_bytes_ + bytes <= max_pending_bytes_; });
  rethrow_error();
  pending_bytes_ += bytes;
  queue_.push_back(std::move(chunk));
  changed_.notify_all();
}

void CaptureAccumulator::drain() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return error_ || (queue_.empty() && !busy_); });
  rethrow_error();
}

void CaptureAccumulator::start_pass(CapturePass pass) {
  drain();
  pass_ = pass;  // the worker is idle: it reads pass_ only while busy
}

void CaptureAccumulator::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    changed_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    CapturedChunk chunk = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    const bool failed_before = error_ != nullptr;
    lock.unlock();
    std::exception_ptr failure;
    try {
      if (!failed_before) accumulate(chunk);  // after an error the rest is only dropped, so drain() returns
    } catch (...) {
      failure = std::current_exception();
    }
    const std::size_t bytes = chunk_bytes(chunk);
    chunk = CapturedChunk();  // freed on this thread, outside the lock
    lock.lock();
    if (failure && !error_) error_ = failure;
    pending_bytes_ -= bytes;
    busy_ = false;
    changed_.notify_all();
  }
}

void CaptureAccumulator::accumulate(const CapturedChunk& captured) {
  if (dump_ && pass_ == CapturePass::kFirst) {
    dump_->append_chunk(captured.layer, captured.chunk_id, captured.query, captured.key, captured.value,
                        {std::int32_t(captured.key.shape.at(0))});
  }
  const calib::ChunkTensors chunk{captured.layer, captured.chunk_id, captured.query.bytes.empty() ? nullptr : &captured.query,
                                  &captured.key, &captured.value};
  const int group_size = state_.geometry.group_size();
  // Model activations are finite unless the model is broken, which should fail loudly rather than be skipped.
  for (int h = 0; h < state_.geometry.num_kv_heads; ++h) {
    calib::HeadStatistics& head = state_.head(captured.layer, h);
    if (pass_ == CapturePass::kFirst) {
      calib::accumulate_first_pass(head, chunk, h, group_size, state_.mask, calib::NonfinitePolicy::kError,
                                   linalg::GramKernels::kEigen);
    } else {
      calib::accumulate_second_pass(head, chunk, h, calib::NonfinitePolicy::kError, linalg::GramKernels::kEigen);
    }
  }
}

}  // namespace oscar::pipeline
