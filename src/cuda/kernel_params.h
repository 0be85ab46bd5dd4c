// Parameters every CUDA kernel of the head gate receives, and the fixed summation structure that
// makes all of them bitwise equal to each other (and so batch invariant across kernels and tiles).
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define DSA_HOST_DEVICE __host__ __device__
#else
#define DSA_HOST_DEVICE
#endif

namespace dsa_indexer::cuda {

// The reduction structure, shared by the portable and the sm_90a kernels:
//   K is cut into kNumKGroups groups of G = round_up(ceil(K / 8), 16) elements (the last ones may be
//   short or empty); a group into chunks of kChunk elements. A chunk's partial sum p starts at 0 and
//   is a chain of m16n8k16 bf16 MMAs over its 16-wide steps in increasing k. A group's sum is
//   q = ((0 + p_0) + p_1) + ..., the total is ((0 + q_0) + q_1) + ... + q_7, and
//   out = ((total * n_heads_inv_sqrt) * q_scale) * softmax_scale.
// NOTE: 8 groups because the sm_90a kernel splits K over the 8 CTAs of a cluster and reduces the
// group sums through distributed shared memory; 128-wide chunks keep each MMA chain 8 deep, short
// enough for decode latency (one warp can run all chunks of a group side by side) and accurate.
constexpr int kNumKGroups = 8;
constexpr int kChunk = 128;
constexpr int kMmaK = 16;

DSA_HOST_DEVICE constexpr std::int64_t group_len(std::int64_t K) {
  return ((K + kNumKGroups - 1) / kNumKGroups + kMmaK - 1) / kMmaK * kMmaK;
}

struct KernelParams {
  const std::uint16_t* x;  // bf16 bits
  const std::uint16_t* w;  // bf16 bits
  const float* q_scale;
  float* out;
  std::int64_t ldx, ldw;          // row strides of x and weight (elements)
  std::int64_t qs_t, qs_h;        // q_scale strides
  std::int64_t out_t, out_h;      // out strides
  std::int64_t T;
  int H, K;
  int G;  // group_len(K)
  float n_heads_inv_sqrt, softmax_scale;
  bool static_weight;  // LogitsHeadGateParams::static_weight: the weight may be read before griddepcontrol.wait
#ifdef DSA_TIMELINE
  // Dev builds only (CMake option DSA_INDEXER_DEV_TIMELINE, tool dev/cuda/timeline): where the sm_90a
  // kernel records when each CTA reached which point (layout: sm90_kernel.cuh). Null: off.
  unsigned long long* timeline;
#endif
};

}  // namespace dsa_indexer::cuda
