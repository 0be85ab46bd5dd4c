// Shared by the dev tools in this folder: CUDA-graph timing of back-to-back launches, launches with
// the head gate's launch rule (programmatic dependent launch), and the parameters of a contiguous
// problem. Not part of the library.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "cuda/cuda_check.h"
#include "dsa_indexer/logits_head_gate.h"

namespace dsa_dev {

// The tools' list arguments: "1,2,4" or "7168x64,6144x32" -> the numbers in order.
inline std::vector<long> parse_list(const char* s) {
  std::vector<long> v;
  for (const char* p = s; *p;) {
    v.push_back(std::strtol(p, const_cast<char**>(&p), 10));
    if (*p == ',' || *p == 'x') ++p;
  }
  return v;
}

// Median microseconds per call of launch(i) for i in [0, n), captured in one graph and replayed 12
// times (the first 2 dropped).
template <class F>
double time_graph(cudaStream_t s, int n, F&& launch) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  DSA_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < n; ++i) launch(i);
  DSA_CUDA_CHECK(cudaStreamEndCapture(s, &g));
  DSA_CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
  cudaEvent_t a, b;
  DSA_CUDA_CHECK(cudaEventCreate(&a));
  DSA_CUDA_CHECK(cudaEventCreate(&b));
  std::vector<float> ms;
  for (int r = 0; r < 12; ++r) {
    DSA_CUDA_CHECK(cudaEventRecord(a, s));
    DSA_CUDA_CHECK(cudaGraphLaunch(ge, s));
    DSA_CUDA_CHECK(cudaEventRecord(b, s));
    DSA_CUDA_CHECK(cudaEventSynchronize(b));
    float m;
    DSA_CUDA_CHECK(cudaEventElapsedTime(&m, a, b));
    if (r >= 2) ms.push_back(m);
  }
  DSA_CUDA_CHECK(cudaEventDestroy(a));
  DSA_CUDA_CHECK(cudaEventDestroy(b));
  DSA_CUDA_CHECK(cudaGraphExecDestroy(ge));
  DSA_CUDA_CHECK(cudaGraphDestroy(g));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2] * 1000.0 / n;
}

// Launches kernel in clusters of `cluster` CTAs along x (0: no cluster attribute), with programmatic
// stream serialization allowed as the head gate's kernels are (pdl) or without.
template <class K, class... Args>
void launch_clusters(K kernel, dim3 grid, dim3 block, std::size_t smem, int cluster, bool pdl, cudaStream_t s,
                     Args... args) {
  cudaLaunchAttribute attrs[2] = {};
  unsigned n = 0;
  if (pdl) {
    attrs[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attrs[n++].val.programmaticStreamSerializationAllowed = 1;
  }
  if (cluster > 0) {
    attrs[n].id = cudaLaunchAttributeClusterDimension;
    attrs[n++].val.clusterDim = {static_cast<unsigned>(cluster), 1, 1};
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attrs;
  cfg.numAttrs = n;
  DSA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, args...));
}
template <class K, class... Args>
void launch_pdl(K kernel, dim3 grid, dim3 block, std::size_t smem, cudaStream_t s, Args... args) {
  launch_clusters(kernel, grid, block, smem, 0, true, s, args...);
}

// Parameters of contiguous x [T, K], weight [H, K], q_scale and out [T, H], with DeepSeek-V3.2's
// scales (H = 64, index head dim 128).
inline dsa_indexer::LogitsHeadGateParams contiguous_params(const void* x, const void* w, const float* q, float* out,
                                                           std::int64_t T, std::int64_t H, std::int64_t K) {
  dsa_indexer::LogitsHeadGateParams p;
  p.x = x;
  p.x_row_stride = K;
  p.weight = w;
  p.weight_row_stride = K;
  p.q_scale = q;
  p.q_scale_stride_t = H;
  p.q_scale_stride_h = 1;
  p.out = out;
  p.out_stride_t = H;
  p.out_stride_h = 1;
  p.T = T;
  p.H = H;
  p.K = K;
  p.n_heads_inv_sqrt = 0.125f;
  p.softmax_scale = 0.0625f;
  return p;
}

}  // namespace dsa_dev
