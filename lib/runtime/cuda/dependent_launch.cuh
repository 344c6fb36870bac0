// Programmatic dependent launch (Hopper): a kernel launched with launch_kernel(..., overlap = true) may start
// while the kernel before it on the stream is still running, so that its launch and its work that does not
// depend on that kernel overlap the other's tail instead of following it. The device side:
//  - wait_for_previous_kernel() returns once the previous kernel has finished and its writes are visible: call
//    it before reading anything that kernel writes;
//  - allow_next_kernel() lets the next kernel's blocks be scheduled before this one finishes (they wait in turn).
// Without such a launch, before sm_90 and in the host emulation of the tests, both do nothing.
#pragma once

#if defined(__CUDACC__)
#include <cuda_runtime.h>

#include <utility>
#endif

namespace oscar::runtime::gpu::detail {

__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_next_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

#if defined(__CUDACC__)
/// kernel<<<grid, block, 0, stream>>>(args…), as a programmatic dependent launch when `overlap`. A device or
/// driver that refuses the attribute (not supported, invalid value: errors that leave the context usable) gets
/// the plain launch. Returns the launch's error code.
template <class... Params, class... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, bool overlap,
                          Args&&... args) {
  if (overlap) {
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = 0;
    config.stream = stream;
    config.attrs = &attribute;
    config.numAttrs = 1;
    const cudaError_t error = cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
    if (error != cudaErrorNotSupported && error != cudaErrorInvalidValue) return error;
    (void)cudaGetLastError();  // the refusal, so that the plain launch reports its own outcome
  }
  kernel<<<grid, block, 0, stream>>>(std::forward<Args>(args)...);
  return cudaGetLastError();
}
#endif

}  // namespace oscar::runtime::gpu::detail
