// Test helper: a kernel that releases its programmatic dependents at once and only then, after a
// delay, writes its output. The next kernel on the stream may start while it still runs, so this
// is what a careless read before griddepcontrol.wait would get wrong (test_logits_head_gate.cpp,
// WeightWrittenByPreviousKernelIsSeen).
#include "late_writer.h"

namespace dsa_test {
namespace {

__global__ void late_writer_kernel(std::uint16_t* dst, const std::uint16_t* src, std::size_t n,
                                   long long delay_ns) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
  long long t0, t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  } while (t - t0 < delay_ns);
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    dst[i] = src[i];
  }
}

}  // namespace

cudaError_t launch_late_writer(std::uint16_t* dst, const std::uint16_t* src, std::size_t n, long long delay_ns,
                               cudaStream_t stream) {
  late_writer_kernel<<<4, 256, 0, stream>>>(dst, src, n, delay_ns);
  return cudaGetLastError();
}

}  // namespace dsa_test
