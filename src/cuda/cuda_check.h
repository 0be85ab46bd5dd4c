// CUDA error checking for the launchers: every runtime call and launch goes through
// DSA_CUDA_CHECK, which throws dsa_indexer::Error with the CUDA error name and message.
#pragma once

#include <cuda_runtime_api.h>

#include "common/check.h"

#define DSA_CUDA_CHECK(expr)                                                             \
  do {                                                                                   \
    const cudaError_t dsa_cuda_err_ = (expr);                                            \
    DSA_CHECK(dsa_cuda_err_ == cudaSuccess, "CUDA error " << cudaGetErrorName(dsa_cuda_err_) \
                                                          << " (" << cudaGetErrorString(dsa_cuda_err_) \
                                                          << ") in " #expr);             \
  } while (0)
