// dsa-indexer public C++ API: the logits head gate of DeepSeek Sparse Attention's indexer.
// Torch-free: raw pointers, sizes and strides in elements. CPU backend on host memory, CUDA backend
// on device memory and a caller-provided stream. Contract: SPEC.md of the project.
#pragma once

#include <cstdint>
#include <string>

#include "dsa_indexer/error.h"

// Same declaration as in <cuda_runtime_api.h>, so that this header needs no CUDA headers.
typedef struct CUstream_st* cudaStream_t;

namespace dsa_indexer {

// out[t, h] = ((x[t] . weight[h]) * n_heads_inv_sqrt * q_scale[t, h]) * softmax_scale,
// the dot product accumulated in fp32 (or wider) in an order that depends only on (H, K), so
// that row t of out depends only on x[t], weight and q_scale[t] (batch invariance).
//
// Element strides, all int64. Rows of x and weight need unit column stride and a row stride
// >= K (slices of wider buffers are fine). q_scale and out take any strides ([T, H, 1] and [T, H]
// views are the same thing for this API: the trailing size-1 dimension carries no stride).
struct LogitsHeadGateParams {
  const void* x = nullptr;  // bf16 bits [T, K]
  std::int64_t x_row_stride = 0;
  const void* weight = nullptr;  // bf16 bits [H, K]
  std::int64_t weight_row_stride = 0;
  const float* q_scale = nullptr;  // fp32 [T, H]
  std::int64_t q_scale_stride_t = 0;
  std::int64_t q_scale_stride_h = 0;
  float* out = nullptr;  // fp32 [T, H]
  std::int64_t out_stride_t = 0;
  std::int64_t out_stride_h = 0;
  std::int64_t T = 0;  // tokens, >= 0
  std::int64_t H = 0;  // heads, >= 1
  std::int64_t K = 0;  // hidden size, >= 1
  float n_heads_inv_sqrt = 0.f;
  float softmax_scale = 0.f;
  // The weight is a constant of the model: no work enqueued earlier on the stream writes it. The
  // sm_90a kernels then copy it into shared memory before they wait for the previous kernel
  // (programmatic dependent launch), while that kernel still runs: 0.2-1 us less per call at
  // T <= 1024. The result is bitwise the same either way. Leave it false when a kernel just
  // before this call may write the weight (for example one that dequantises it): that kernel
  // would otherwise be read mid-write.
  bool static_weight = false;
};

// Throws dsa_indexer::Error (naming the argument) when the parameters are invalid; nothing is
// written to out in that case. T == 0 returns at once.
void check_params(const LogitsHeadGateParams& p);

// CPU backend: host pointers. Multithreaded (DSA_INDEXER_NUM_THREADS or the hardware count),
// vectorised, deterministic and batch invariant. Blocks until out is written.
void logits_head_gate_cpu(const LogitsHeadGateParams& p);

// Which CUDA kernel family to use. kAuto is what applications want: the fast sm_90a kernel where
// it applies, the portable kernel elsewhere. kPortable forces the portable kernel (tests and
// benchmarks compare the two).
enum class CudaPath { kAuto, kPortable };

// CUDA backend: device pointers on the current device, enqueued on `stream`; no host
// synchronisation, no allocation, safe under CUDA-graph capture. Throws dsa_indexer::Error for bad
// arguments (checked before anything is enqueued: a pointer that is not device memory of the
// current device is named) and for CUDA errors (with the CUDA message).
// In a build without CUDA it throws dsa_indexer::Error saying so.
void logits_head_gate_cuda(const LogitsHeadGateParams& p, cudaStream_t stream,
                           CudaPath path = CudaPath::kAuto);

// True when the library was built with the CUDA backend.
bool cuda_backend_available();

// The kernel and tile the CUDA backend picks for these parameters on the current device, as one
// line of text (for logs and benchmarks). Does not launch anything.
std::string describe_cuda_dispatch(const LogitsHeadGateParams& p,
                                   CudaPath path = CudaPath::kAuto);

// Library version, "MAJOR.MINOR.PATCH".
const char* version();

}  // namespace dsa_indexer
