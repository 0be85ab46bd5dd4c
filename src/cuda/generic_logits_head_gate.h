// Launcher of the portable kernel (generic_logits_head_gate.cu).
#pragma once

#include <cuda_runtime_api.h>

#include "cuda/kernel_params.h"

namespace dsa_indexer::cuda {

// True when x and weight allow 16-byte loads (aligned bases, row strides and K multiples of 8).
bool generic_vector_loads_ok(const KernelParams& p);

// Enqueues the portable kernel; any T >= 1, H, K, strides. Throws on a launch error.
void launch_generic(const KernelParams& p, cudaStream_t stream);

}  // namespace dsa_indexer::cuda
