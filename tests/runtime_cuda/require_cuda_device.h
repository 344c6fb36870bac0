// The guard of every GPU test: without a CUDA device the test is skipped with a clear message (CI has none).
#pragma once

#include <gtest/gtest.h>

#include "runtime/cuda/int2_cuda.h"

#define REQUIRE_CUDA_DEVICE()                                                        \
  do {                                                                               \
    if (!::oscar::runtime::gpu::cuda_device_available()) {                           \
      GTEST_SKIP() << "no CUDA device: GPU tests skipped";                           \
    }                                                                                \
  } while (0)
