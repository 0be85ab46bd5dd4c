// Portable CUDA kernel of the head gate (sm_80 and newer): any T, H, K, any row stride and
// alignment. It is the fallback of the sm_90a kernel and is bitwise equal to it where both apply,
// because both follow the reduction structure of kernel_params.h with the same MMA instruction.
#include <cuda_runtime.h>

#include <algorithm>

#include "common/check.h"
#include "cuda/cuda_check.h"
#include "cuda/generic_logits_head_gate.h"
#include "cuda/mma_sm80.cuh"

namespace dsa_indexer::cuda {
namespace {

constexpr int kBlockT = 64;   // tokens per CTA: 4 warps x 16
constexpr int kBlockH = 32;   // heads per CTA: 4 n8 tiles per warp
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kVecs = kRowBytes / 16;  // 16-byte vectors per tile row

// Copies rows [row0, row0 + rows) x columns [k0, k_end) of a bf16 matrix into a swizzled
// 128-wide shared tile, zero-filling what lies outside (rows >= nrows, columns >= k_end).
// kVec: 16-byte loads (the launcher checked alignment of base, row stride, K and G); otherwise
// element by element, which handles any stride and any offset.
template <bool kVec, int kRows>
__device__ __forceinline__ void load_tile(unsigned char* tile, const std::uint16_t* src,
                                          std::int64_t ld, std::int64_t row0, std::int64_t nrows,
                                          std::int64_t k0, std::int64_t k_end) {
  for (int i = threadIdx.x; i < kRows * kVecs; i += kThreads) {
    const int r = i / kVecs;
    const int v = i % kVecs;
    const std::int64_t row = row0 + r;
    const std::int64_t k = k0 + v * 8;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (row < nrows && k < k_end) {
      const std::uint16_t* p = src + row * ld + k;
      if constexpr (kVec) {
        val = __ldg(reinterpret_cast<const uint4*>(p));
      } else {
        std::uint16_t e[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) e[j] = (k + j < k_end) ? __ldg(p + j) : std::uint16_t{0};
        val.x = e[0] | (std::uint32_t{e[1]} << 16);
        val.y = e[2] | (std::uint32_t{e[3]} << 16);
        val.z = e[4] | (std::uint32_t{e[5]} << 16);
        val.w = e[6] | (std::uint32_t{e[7]} << 16);
      }
    }
    *reinterpret_cast<uint4*>(tile + swizzled_offset(r, v)) = val;
  }
}

template <bool kVec>
__global__ void __launch_bounds__(kThreads) generic_logits_head_gate_kernel(const KernelParams p) {
  __shared__ __align__(128) unsigned char x_tile[kBlockT * kRowBytes];
  __shared__ __align__(128) unsigned char w_tile[kBlockH * kRowBytes];

  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const std::int64_t t0 = static_cast<std::int64_t>(blockIdx.x) * kBlockT;
  const int num_head_tiles = (p.H + kBlockH - 1) / kBlockH;
  const std::uint32_t x_addr = smem_addr(x_tile);
  const std::uint32_t w_addr = smem_addr(w_tile);

  for (int ht = blockIdx.y; ht < num_head_tiles; ht += gridDim.y) {
    const int h0 = ht * kBlockH;
    float total[1][kBlockH / 8][4];
    zero(total);
    for (int g = 0; g < kNumKGroups; ++g) {
      const std::int64_t g0 = static_cast<std::int64_t>(g) * p.G;
      const std::int64_t len = std::min<std::int64_t>(p.G, p.K - g0);
      if (len <= 0) break;  // every later group is empty too
      float q[1][kBlockH / 8][4];
      zero(q);
      for (std::int64_t c0 = 0; c0 < len; c0 += kChunk) {
        __syncthreads();  // the previous chunk's tiles are no longer read
        load_tile<kVec, kBlockT>(x_tile, p.x, p.ldx, t0, p.T, g0 + c0, g0 + len);
        load_tile<kVec, kBlockH>(w_tile, p.w, p.ldw, h0, p.H, g0 + c0, g0 + len);
        __syncthreads();
        const int steps = static_cast<int>((std::min<std::int64_t>(kChunk, len - c0) + kMmaK - 1) / kMmaK);
        float acc[1][kBlockH / 8][4];
        zero(acc);
        for (int s = 0; s < steps; ++s) {
          warp_mma_step<1, kBlockH / 8>(acc, x_addr, warp * 16, w_addr, 0, s, lane);
        }
        accumulate(q, acc);
      }
      accumulate(total, q);
    }
    // Epilogue: fragment element i of n8 tile nt sits at row g (+8 for i >= 2), head 2*qd (+1).
#pragma unroll
    for (int nt = 0; nt < kBlockH / 8; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const std::int64_t t = t0 + warp * 16 + lane / 4 + (i >= 2 ? 8 : 0);
        const int h = h0 + nt * 8 + 2 * (lane % 4) + (i & 1);
        if (t < p.T && h < p.H) {
          const float qs = p.q_scale[t * p.qs_t + h * p.qs_h];
          p.out[t * p.out_t + h * p.out_h] =
              scale_output(total[0][nt][i], p.n_heads_inv_sqrt, qs, p.softmax_scale);
        }
      }
    }
  }
}

}  // namespace

bool generic_vector_loads_ok(const KernelParams& p) {
  const auto aligned16 = [](const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; };
  return p.K % 8 == 0 && p.G % 8 == 0 && aligned16(p.x) && aligned16(p.w) && p.ldx % 8 == 0 &&
         p.ldw % 8 == 0;
}

void launch_generic(const KernelParams& p, cudaStream_t stream) {
  const std::int64_t t_tiles = (p.T + kBlockT - 1) / kBlockT;
  DSA_CHECK(t_tiles <= 0x7fffffff, "T too large for one launch: " << p.T);
  const int h_tiles = (p.H + kBlockH - 1) / kBlockH;
  const dim3 grid(static_cast<unsigned>(t_tiles), static_cast<unsigned>(std::min(h_tiles, 65535)));
  if (generic_vector_loads_ok(p)) {
    generic_logits_head_gate_kernel<true><<<grid, kThreads, 0, stream>>>(p);
  } else {
    generic_logits_head_gate_kernel<false><<<grid, kThreads, 0, stream>>>(p);
  }
  DSA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace dsa_indexer::cuda
