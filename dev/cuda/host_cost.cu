// Dev tool: where the host time of one CUDA-backend call goes (eager use, T = 1, DeepSeek shape).
// Times, per call on the host, the calls the entry point makes (cudaGetDevice,
// cudaPointerGetAttributes, the launch of an empty kernel with the head gate's launch attributes)
// beside the whole logits_head_gate_cuda call, so that the host cost of checks and dispatch can be
// read off against the launch floor. Launches are drained every 500 calls so the queue never blocks.
// Build: cmake -B build -DDSA_INDEXER_BUILD_DEV=ON && cmake --build build --target host_cost
// Run:   ./build/dev/cuda/host_cost
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "cuda/cuda_check.h"
#include "dev_timing.h"
#include "dsa_indexer/logits_head_gate.h"

namespace {

__global__ void __cluster_dims__(8, 1, 1) empty_kernel() {
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
}

// Median over 7 repeats of the host microseconds per call of `f` over n calls.
template <class F>
double host_us(F&& f, cudaStream_t s, int n = 5000) {
  std::vector<double> us;
  for (int r = 0; r < 7; ++r) {
    DSA_CUDA_CHECK(cudaStreamSynchronize(s));
    double total = 0;
    for (int done = 0; done < n; done += 500) {
      const auto a = std::chrono::steady_clock::now();
      for (int i = 0; i < 500; ++i) f();
      total += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - a).count();
      DSA_CUDA_CHECK(cudaStreamSynchronize(s));
    }
    us.push_back(total / n);
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

}  // namespace

int main() {
  DSA_CUDA_CHECK(cudaSetDevice(0));
  constexpr int T = 1, H = 64, K = 7168;
  void *x, *w;
  float *q, *out;
  DSA_CUDA_CHECK(cudaMalloc(&x, T * K * 2));
  DSA_CUDA_CHECK(cudaMalloc(&w, H * K * 2));
  DSA_CUDA_CHECK(cudaMalloc(&q, T * H * 4));
  DSA_CUDA_CHECK(cudaMalloc(&out, T * H * 4));
  DSA_CUDA_CHECK(cudaMemset(x, 0, T * K * 2));
  DSA_CUDA_CHECK(cudaMemset(w, 0, H * K * 2));
  DSA_CUDA_CHECK(cudaMemset(q, 0, T * H * 4));
  cudaStream_t s;
  DSA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const dsa_indexer::LogitsHeadGateParams p = dsa_dev::contiguous_params(x, w, q, out, T, H, K);
  dsa_indexer::logits_head_gate_cuda(p, s);  // first call: occupancy queries, module load
  DSA_CUDA_CHECK(cudaStreamSynchronize(s));

  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(64);
  cfg.blockDim = dim3(256);
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = 1;

  std::printf("host us per call (median of 7 x 5000 calls), T = %d, H = %d, K = %d\n", T, H, K);
  int dev = 0;
  std::printf("%-60s %8.3f\n", "cudaGetDevice", host_us([&] { (void)cudaGetDevice(&dev); }, s));
  cudaPointerAttributes a{};
  std::printf("%-60s %8.3f\n", "cudaPointerGetAttributes (one pointer)",
              host_us([&] { (void)cudaPointerGetAttributes(&a, x); }, s));
  std::printf("%-60s %8.3f\n", "cudaLaunchKernelEx, empty kernel, clusters of 8 + PDL",
              host_us([&] { DSA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, empty_kernel)); }, s));
  std::printf("%-60s %8.3f\n", "check_params", host_us([&] { dsa_indexer::check_params(p); }, s));
  std::printf("%-60s %8.3f\n", "logits_head_gate_cuda (whole call)",
              host_us([&] { dsa_indexer::logits_head_gate_cuda(p, s); }, s));
  DSA_CUDA_CHECK(cudaStreamDestroy(s));
  for (void* ptr : {x, w, static_cast<void*>(q), static_cast<void*>(out)}) DSA_CUDA_CHECK(cudaFree(ptr));
  return 0;
}
