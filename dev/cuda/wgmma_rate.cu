// What one SM's tensor cores take for the prefill tiles' per-wave work, with nothing loaded: a
// chain of 8 wgmma m64nNk16 steps (one 128-wide chunk of K) from operands already in shared memory,
// repeated, on every SM at once (one CTA per SM). Variants: the operand shapes of T64H64tma (one
// warpgroup, m64n64: x rows as A, 64 heads as B), T128H64 (two warpgroups sharing B), the GLM
// tiles (n32), and a transposed tiling (64 heads as A, 128 tokens as B, one warpgroup); each with
// the chain alone (wait for it, issue the next), or with the kernel's per-wave bookkeeping (sum the
// accumulators into the group sums, __syncthreads), or with two accumulator sets so that one chain
// runs while the other is summed. Then the decode tiles' mma.sync chunk chains (chain_kernel) and
// m64n16 wgmma chains. Prints cycles per chain and tensor FLOP per cycle per SM.
// Usage: wgmma_rate [chains per CTA, default 4096]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/sm90_kernel.cuh"

namespace dsa_indexer::cuda {
namespace {
#ifdef DSA_SM90_BODY
// m64n128k16, for the transposed tiling (heads as M, 128 tokens as N); the kernel header has N <= 64.
__device__ __forceinline__ void wgmma_m64n128k16(float (&d)[16][4], std::uint32_t a_lo, std::uint32_t b_lo, bool accumulate) {
  asm volatile(
      "{\n .reg .pred p;\n .reg .b64 da, db;\n setp.ne.b32 p, %67, 0;\n"
      " mov.b64 da, {%64, %66};\n mov.b64 db, {%65, %66};\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, da, db, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]), "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]), "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]), "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]), "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
      : "r"(a_lo), "r"(b_lo), "n"(kSmemDescHi), "r"(static_cast<int>(accumulate)));
}

template <int kN>
__device__ __forceinline__ void mma_step(float (&d)[kN / 8][4], std::uint32_t a_lo, std::uint32_t b_lo, bool acc) {
  if constexpr (kN == 128) {
    wgmma_m64n128k16(d, a_lo, b_lo, acc);
  } else {
    wgmma_m64k16<kN>(d, a_lo, b_lo, acc);
  }
}
#endif

constexpr int kHalfRow = 128;  // bytes of 64 bf16: one 128-byte swizzle span
enum Mode { kChain = 0, kBookkeeping = 1, kTwoSets = 2 };

// A: kWG x 64 rows (or 64 rows shared when kShareA), B: kN rows (shared by the warpgroups unless
// kShareA, in which case each warpgroup has its own kN rows), both K-major 128-byte swizzled,
// halves of 64 columns stored one after the other as in the kernel's ring slots.
template <int kN, int kWG, bool kShareA, int kMode>
__global__ void __launch_bounds__(128 * kWG, 1) rate_kernel(int chains, unsigned long long* cycles, float* sink) {
#ifdef DSA_SM90_BODY
  extern __shared__ __align__(1024) unsigned char smem[];
  const int tid = threadIdx.x, wg = tid / 128;
  constexpr int kARows = kShareA ? 64 : 64 * kWG, kBRows = kShareA ? kN * kWG : kN;
  const std::uint32_t a_base = static_cast<std::uint32_t>(__cvta_generic_to_shared(smem));
  const std::uint32_t b_base = a_base + 2 * kARows * kHalfRow;
  for (int i = tid; i < 2 * (kARows + kBRows) * kHalfRow / 4; i += blockDim.x)
    reinterpret_cast<unsigned*>(smem)[i] = 0x3c003c00u ^ (i * 2654435761u & 0x00ff00ffu);  // bf16 near 1/128
  __syncthreads();
  const std::uint32_t a_lo = smem_desc_lo(a_base + (kShareA ? 0 : wg * 64 * kHalfRow));
  const std::uint32_t b_lo = smem_desc_lo(b_base + (kShareA ? wg * kN * kHalfRow : 0));
  float acc[2][kN / 8][4], q[kN / 8][4] = {};
  const auto issue = [&](float (&d)[kN / 8][4]) {
    wgmma_fence();
#pragma unroll
    for (int st = 0; st < 8; ++st)
      mma_step<kN>(d, a_lo + (((st >> 2) * kARows * kHalfRow + (st & 3) * 32) >> 4),
                   b_lo + (((st >> 2) * kBRows * kHalfRow + (st & 3) * 32) >> 4), st > 0);
    wgmma_commit();
  };
  const auto pin = [&](float (&d)[kN / 8][4]) {
#pragma unroll
    for (int n = 0; n < kN / 8; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) asm volatile("" : "+f"(d[n][i])::"memory");
  };
  const auto sum = [&](float (&d)[kN / 8][4]) {
#pragma unroll
    for (int n = 0; n < kN / 8; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) q[n][i] = __fadd_rn(q[n][i], d[n][i]);
  };
  const unsigned long long c0 = clock64();
  if constexpr (kMode == kTwoSets) {
    // Two chains per iteration, both waited for inside it (a chain in flight across the back edge
    // makes ptxas serialise every wgmma, warning C7514): the first is summed while the second runs.
#pragma unroll 1
    for (int c = 0; c < chains; c += 2) {
      issue(acc[0]);
      issue(acc[1]);
      wgmma_wait<1>();
      pin(acc[0]);
      sum(acc[0]);
      wgmma_wait<0>();
      pin(acc[1]);
      sum(acc[1]);
      __syncthreads();
    }
  } else {
#pragma unroll 1
    for (int c = 0; c < chains; ++c) {
      issue(acc[0]);
      wgmma_wait<0>();
      pin(acc[0]);
      if constexpr (kMode == kBookkeeping) {
        sum(acc[0]);
        __syncthreads();
      }
    }
    if constexpr (kMode == kChain) sum(acc[0]);
  }
  const unsigned long long c1 = clock64();
  if (tid == 0) cycles[blockIdx.x] = c1 - c0;
  float s = 0.f;
#pragma unroll
  for (int n = 0; n < kN / 8; ++n)
#pragma unroll
    for (int i = 0; i < 4; ++i) s += q[n][i];
  if (s == 12345.f) sink[tid] = s;  // keeps the sums live
#endif
}

// The decode tiles' chunk chains (mma.sync, chunk_mma of mma_sm80.cuh): kWarps warps, each running
// chains of 8 k16 steps of a (16 kMT) x (8 kNT) warp tile on its own chunk, as the tiles' warps do
// side by side. Each chain waits for the one before it (its result picks the next chain's A
// address), as a decode warp's one chain is waited for by the partial stores after it.
template <int kMT, int kNT, int kWarps>
__global__ void __launch_bounds__(32 * kWarps, 1) chain_kernel(int chains, unsigned long long* cycles, float* sink) {
#ifdef DSA_SM90_BODY
  extern __shared__ __align__(1024) unsigned char smem[];
  constexpr int kRowsA = 16 * kMT, kRowsB = 8 * kNT;
  constexpr int kChunkBytes = (kRowsA + kRowsB) * 2 * kHalfRow;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  for (int i = tid; i < kWarps * kChunkBytes / 4; i += blockDim.x)
    reinterpret_cast<unsigned*>(smem)[i] = 0x3c003c00u ^ (i * 2654435761u & 0x00ff00ffu);  // bf16 near 1/128
  __syncthreads();
  const FragOffsets<kMT, kNT, kRowsA, kRowsB> frag(0, 0, lane);
  std::uint32_t a_tile = static_cast<std::uint32_t>(__cvta_generic_to_shared(smem)) + warp * kChunkBytes;
  const std::uint32_t b_tile = a_tile + kRowsA * 2 * kHalfRow;
  float acc[kMT][kNT][4], q[kMT][kNT][4] = {};
  const unsigned long long c0 = clock64();
#pragma unroll 1
  for (int c = 0; c < chains; ++c) {
    chunk_mma(acc, frag, a_tile, b_tile, kChunk / kMmaK);
    accumulate(q, acc);
    if (acc[0][0][0] == 12345.f) a_tile += 16;  // never taken; the next chain waits for this one
  }
  const unsigned long long c1 = clock64();
  if (tid == 0) cycles[blockIdx.x] = c1 - c0;
  float s = 0.f;
#pragma unroll
  for (int m = 0; m < kMT; ++m)
#pragma unroll
    for (int n = 0; n < kNT; ++n)
#pragma unroll
      for (int i = 0; i < 4; ++i) s += q[m][n][i];
  if (s == 12345.f) sink[tid] = s;  // keeps the sums live
#endif
}

// Median over CTAs and 3 runs of a kernel's cycles per chain (one CTA per SM).
template <class Kernel>
std::vector<double> cycles_per_chain(Kernel k, int threads, int chains, int sms, unsigned long long* d_cycles,
                                     float* sink) {
  const int smem = 200 * 1024;  // one CTA per SM whatever the operands take
  DSA_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  std::vector<double> per_chain;
  for (int rep = 0; rep < 3; ++rep) {
    k<<<sms, threads, smem>>>(chains, d_cycles, sink);
    DSA_CUDA_CHECK(cudaGetLastError());
    DSA_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<unsigned long long> c(sms);
    DSA_CUDA_CHECK(cudaMemcpy(c.data(), d_cycles, sms * sizeof(c[0]), cudaMemcpyDeviceToHost));
    for (auto v : c) per_chain.push_back(static_cast<double>(v) / chains);
  }
  std::sort(per_chain.begin(), per_chain.end());
  return per_chain;
}

template <int kMT, int kNT, int kWarps>
void run_chain(const char* what, int chains, int sms, unsigned long long* d_cycles, float* sink) {
  const std::vector<double> c =
      cycles_per_chain(chain_kernel<kMT, kNT, kWarps>, 32 * kWarps, chains, sms, d_cycles, sink);
  const double med = c[c.size() / 2];
  const double flop = 2.0 * 16 * kMT * 8 * kNT * kChunk * kWarps;
  std::printf("%-58s %8.1f %8.1f %8.1f %10.0f %6.1f%%\n", what, c.front(), med, c.back(), flop / med,
              100.0 * flop / med / 4096.0);
}

template <int kN, int kWG, bool kShareA, int kMode>
void run(const char* what, int chains, int sms, unsigned long long* d_cycles, float* sink) {
  constexpr int kARows = kShareA ? 64 : 64 * kWG, kBRows = kShareA ? kN * kWG : kN;
  const int need = 2 * (kARows + kBRows) * kHalfRow;
  if (need > 200 * 1024) std::abort();
  const std::vector<double> per_chain =
      cycles_per_chain(rate_kernel<kN, kWG, kShareA, kMode>, 128 * kWG, chains, sms, d_cycles, sink);
  const double med = per_chain[per_chain.size() / 2];
  const double flop = 2.0 * 64 * kN * 16 * 8 * kWG;
  std::printf("%-58s %8.1f %8.1f %8.1f %10.0f %6.1f%%\n", what, per_chain.front(), med, per_chain.back(),
              flop / med, 100.0 * flop / med / 4096.0);
}

}  // namespace
}  // namespace dsa_indexer::cuda

int main(int argc, char** argv) {
  using namespace dsa_indexer::cuda;
  const int chains = argc > 1 ? std::atoi(argv[1]) : 4096;
  int sms = 0;
  DSA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  unsigned long long* d_cycles;
  float* sink;
  DSA_CUDA_CHECK(cudaMalloc(&d_cycles, sms * sizeof(unsigned long long)));
  DSA_CUDA_CHECK(cudaMalloc(&sink, 1024 * sizeof(float)));
  std::printf("one CTA on each of %d SMs, %d chains of 8 x k16 each; cycles per chain (min / median / max "
              "over CTAs and 3 runs), FLOP per cycle per SM at the median, %% of 4096 (dense bf16 peak)\n",
              sms, chains);
  std::printf("%-58s %8s %8s %8s %10s %7s\n", "variant", "min", "median", "max", "FLOP/clk", "peak");
  run<64, 1, false, kChain>("T64H64tma: 1 wg, m64n64 (A x, B w), chain", chains, sms, d_cycles, sink);
  run<64, 1, false, kBookkeeping>("T64H64tma: 1 wg, m64n64, + sum + __syncthreads", chains, sms, d_cycles, sink);
  run<64, 1, false, kTwoSets>("T64H64tma: 1 wg, m64n64, two sets", chains, sms, d_cycles, sink);
  run<64, 2, false, kChain>("T128H64: 2 wg, m64n64 (A x per wg, B w shared), chain", chains, sms, d_cycles, sink);
  run<64, 2, false, kBookkeeping>("T128H64: 2 wg, m64n64, + sum + __syncthreads", chains, sms, d_cycles, sink);
  run<64, 2, false, kTwoSets>("T128H64: 2 wg, m64n64, two sets", chains, sms, d_cycles, sink);
  run<128, 1, false, kChain>("T128H64 transposed: 1 wg, m64n128 (A w, B x), chain", chains, sms, d_cycles, sink);
  run<128, 1, false, kBookkeeping>("T128H64 transposed: 1 wg, m64n128, + sum + sync", chains, sms, d_cycles, sink);
  run<64, 2, true, kChain>("T128H64 transposed: 2 wg, m64n64 (A w shared, B x), chain", chains, sms, d_cycles, sink);
  run<128, 2, true, kChain>("T256H64 transposed: 2 wg, m64n128 (A w shared), chain", chains, sms, d_cycles, sink);
  run<128, 2, true, kBookkeeping>("T256H64 transposed: 2 wg, m64n128, + sum + sync", chains, sms, d_cycles, sink);
  run<64, 1, true, kChain>("T64H64 transposed: 1 wg, m64n64 (A w, B x), chain", chains, sms, d_cycles, sink);
  run<32, 1, false, kChain>("T64H32tma: 1 wg, m64n32, chain", chains, sms, d_cycles, sink);
  run<32, 2, false, kChain>("T128H32tma: 2 wg, m64n32, chain", chains, sms, d_cycles, sink);
  run<32, 2, false, kBookkeeping>("T128H32tma: 2 wg, m64n32, + sum + __syncthreads", chains, sms, d_cycles, sink);
  // Decode: the chunk chains of the mma.sync tiles, and m64n16 wgmma chains (64 heads as A, 16
  // tokens as B) as a decode tile could run them instead (NOTES.md version 66).
  std::printf("decode chunk chains (mma.sync m16n8k16, each chain waited for before the next):\n");
  run_chain<1, 1, 1>("1 warp, one m16n8 block: a chain of 8 dependent MMAs", chains, sms, d_cycles, sink);
  run_chain<1, 4, 1>("1 warp, 16 x 32 (T16H32s1tx's warp tile)", chains, sms, d_cycles, sink);
  run_chain<1, 4, 7>("7 warps, 16 x 32 each (T16H32s1tx, K = 7168)", chains, sms, d_cycles, sink);
  run_chain<1, 4, 8>("8 warps, 16 x 32 each (T16H32s1tx, K = 8192)", chains, sms, d_cycles, sink);
  run_chain<2, 4, 7>("7 warps, 32 x 32 each (T32H32s1tx)", chains, sms, d_cycles, sink);
  run_chain<1, 2, 7>("7 warps, 16 x 16 each (T16H16tx)", chains, sms, d_cycles, sink);
  run<16, 1, false, kChain>("1 wg, m64n16 (A 64 heads, B 16 tokens), chain", chains, sms, d_cycles, sink);
  run<16, 1, false, kTwoSets>("1 wg, m64n16, two chains in flight", chains, sms, d_cycles, sink);
  run<16, 2, false, kTwoSets>("2 wg, m64n16, two chains in flight each", chains, sms, d_cycles, sink);
  DSA_CUDA_CHECK(cudaFree(d_cycles));
  DSA_CUDA_CHECK(cudaFree(sink));
  return 0;
}
