// CUDA backend entry points for a build without nvcc: they report that the backend is missing.
#include "common/check.h"
#include "dsa_indexer/logits_head_gate.h"

namespace dsa_indexer {

bool cuda_backend_available() { return false; }

void logits_head_gate_cuda(const LogitsHeadGateParams& p, cudaStream_t /*stream*/,
                           CudaPath /*path*/) {
  check_params(p);
  DSA_CHECK(false, "this build of dsa_indexer has no CUDA backend (configured without nvcc)");
}

std::string describe_cuda_dispatch(const LogitsHeadGateParams& /*p*/, CudaPath /*path*/) {
  return "no CUDA backend in this build";
}

}  // namespace dsa_indexer
