// Dev tool: what a prefill tile's push of group sums costs by itself. Clusters of 8 CTAs (256
// threads, one CTA per SM), each CTA storing 32 KB per round as T128H64ws pushes a tile's sums:
// every thread eight 16-byte stores, each to the owner of its row block, at this CTA's place in
// the owner's inbox. Rounds end at a cluster barrier (after the owner has seen its bytes, where the
// stores count on an mbarrier). Ways to store:
//   none          the barriers alone (what a round costs without stores);
//   st.async      the kernel's push: remote st.async, counted on the owner's mbarrier;
//   st.async self the same instruction into this CTA's own inbox;
//   st remote     plain st.shared::cluster to the owner, nothing counted;
//   st local      plain st.shared into this CTA's own inbox;
//   bulk          plain local stores into a staging buffer, then one 1-D bulk copy per owner
//                 (cp.async.bulk shared::cta -> shared::cluster, the TMA engine), counted on the
//                 owner's mbarrier: the warps hand the remote traffic to the copy engine;
//   bulk self     the same, every copy into this CTA's own inbox;
//   pull          plain local stores into the staging buffer, a cluster barrier, then every thread
//                 loads its eight 16-byte pieces from the peers (ld.shared::cluster): the owners
//                 fetch their rows instead of the peers pushing them (one cluster barrier more per
//                 round than "none").
// With one cluster (what one SM's path moves) and with 15 (every SM of the kernel's grid).
// Prints cycles per round (median over CTAs and rounds) and bytes per cycle per SM above "none".
// Build: cmake -B build -DDSA_INDEXER_BUILD_DEV=ON && cmake --build build --target dsmem_rate
// Run:   ./build/dev/cuda/dsmem_rate [rounds, default 2000]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/sm90_kernel.cuh"
#include "dev_timing.h"

namespace dsa_indexer::cuda {
namespace {

enum Way {
  kNone = 0,
  kStAsync = 1,
  kStAsyncSelf = 2,
  kStRemote = 3,
  kStLocal = 4,
  kBulk = 5,
  kBulkSelf = 6,
  kPull = 7
};
constexpr int kThreadsPerCta = 256, kStoresPerThread = 8;
constexpr unsigned kRoundBytes = kThreadsPerCta * kStoresPerThread * 16;  // 32 KB, T128H64ws's tile
constexpr unsigned kBlockBytes = kRoundBytes / kClusterSize;              // per owner

template <int kWay>
__global__ void __launch_bounds__(kThreadsPerCta, 1) push_kernel(int rounds, unsigned long long* cycles) {
#ifdef DSA_SM90_BODY
  extern __shared__ __align__(1024) unsigned char smem[];
  float* inbox = reinterpret_cast<float*>(smem);  // kRoundBytes: kClusterSize blocks of kBlockBytes
  // bulk / pull: this CTA's sums, block o for owner o, before they travel.
  const std::uint32_t staging = smem_addr(smem + kRoundBytes);
  const std::uint32_t bar = smem_addr(smem + 2 * kRoundBytes);
  const int tid = threadIdx.x;
  const unsigned rank = cluster_ctarank();
  if (tid == 0) mbar_init(bar, 1);
  __syncthreads();
  cluster_arrive_relaxed();
  cluster_wait();
  // Store j of thread t: owner (t + j) % 8, 16 bytes at this CTA's block of the owner's inbox, the
  // lanes of a warp on consecutive 16 bytes (no bank conflicts, as the kernel's swizzled pushes).
  std::uint32_t dst[kStoresPerThread], dst_bar[kStoresPerThread];
#pragma unroll
  for (int j = 0; j < kStoresPerThread; ++j) {
    const unsigned owner = kWay == kStAsyncSelf || kWay == kStLocal ? rank : (tid + j) % kClusterSize;
    const std::uint32_t local = smem_addr(inbox) + rank * kBlockBytes + ((tid + 32 * j) % (kBlockBytes / 16)) * 16;
    dst[j] = kWay == kStLocal ? local : map_to_rank(local, owner);
    dst_bar[j] = map_to_rank(bar, owner);
  }
  const float v = static_cast<float>(tid);
  // bulk / pull: store j of thread t goes to staging block (t + j) % 8 (its owner's), at the
  // offset the push would use in the owner's inbox block; the pull reads block `rank` of peer
  // (t + j) % 8's staging at the same offsets.
  std::uint32_t stage[kStoresPerThread], pull_src[kStoresPerThread];
#pragma unroll
  for (int j = 0; j < kStoresPerThread; ++j) {
    const unsigned owner = (tid + j) % kClusterSize;
    const std::uint32_t off = ((tid + 32 * j) % (kBlockBytes / 16)) * 16;
    stage[j] = staging + owner * kBlockBytes + off;
    pull_src[j] = map_to_rank(staging + rank * kBlockBytes + off, owner);
  }
  float pulled = 0.f;
  const unsigned long long c0 = clock64();
#pragma unroll 1
  for (int r = 0; r < rounds; ++r) {
    // Every byte this CTA receives in a round counts on its barrier: 8 blocks from the 8 CTAs
    // (st.async), or this CTA's own 32 KB (st.async self).
    constexpr bool kCounted = kWay == kStAsync || kWay == kStAsyncSelf || kWay == kBulk || kWay == kBulkSelf;
    if (kCounted && tid == 0) mbar_arrive_expect_tx(bar, kRoundBytes);
#pragma unroll
    for (int j = 0; j < kStoresPerThread; ++j) {
      if constexpr (kWay == kBulk || kWay == kBulkSelf || kWay == kPull) {
        asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(stage[j]), "f"(v), "f"(v), "f"(v), "f"(v)
                     : "memory");
      } else if constexpr (kCounted) {
        st_async_f4_mapped(dst[j], dst_bar[j], v, v, v, v);
      } else if constexpr (kWay == kStRemote) {
        asm volatile("st.shared::cluster.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(dst[j]), "f"(v), "f"(v), "f"(v), "f"(v)
                     : "memory");
      } else if constexpr (kWay == kStLocal) {
        asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(dst[j]), "f"(v), "f"(v), "f"(v), "f"(v)
                     : "memory");
      }
    }
    if constexpr (kWay == kBulk || kWay == kBulkSelf) {
      // The copy engine reads the staging buffer through the async proxy: the generic stores
      // above must be visible to it, from every thread, before lanes 0-7 of warp 0 issue.
      asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
      __syncthreads();
      if (tid < kClusterSize) {
        const unsigned owner = kWay == kBulkSelf ? rank : static_cast<unsigned>(tid);
        const std::uint32_t src = staging + tid * kBlockBytes;
        const std::uint32_t dst = map_to_rank(smem_addr(inbox) + (kWay == kBulkSelf ? tid : rank) * kBlockBytes, owner);
        asm volatile(
            "cp.async.bulk.shared::cluster.shared::cta.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
            "r"(src), "r"(kBlockBytes), "r"(map_to_rank(bar, owner))
            : "memory");
      }
    }
    if constexpr (kWay == kPull) {
      asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
      cluster_wait();
#pragma unroll
      for (int j = 0; j < kStoresPerThread; ++j) {
        float a, b, c, d;
        asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];\n"
                     : "=f"(a), "=f"(b), "=f"(c), "=f"(d)
                     : "r"(pull_src[j])
                     : "memory");
        pulled += a + b + c + d;
      }
    }
    if constexpr (kCounted) mbar_wait_parity(bar, r & 1);
    // Release / acquire: the plain stores of a round are done before the next round's.
    asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
    cluster_wait();
  }
  const unsigned long long c1 = clock64();
  if (tid == 0) cycles[blockIdx.x] = c1 - c0;
  if (pulled == -1.f) cycles[blockIdx.x] = 0;  // keeps the pulled loads (the values are never negative)
#endif
}

// Median cycles per round over the CTAs of 3 launches.
template <int kWay>
double cycles_per_round(int clusters, int rounds, unsigned long long* d_cycles) {
  // inbox + staging (64 KB) would let three CTAs share an SM: 120 KB keeps one per SM.
  const int smem = 120 * 1024;
  auto k = push_kernel<kWay>;
  DSA_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  std::vector<double> per_round;
  for (int rep = 0; rep < 3; ++rep) {
    dsa_dev::launch_clusters(k, dim3(clusters * kClusterSize), dim3(kThreadsPerCta), smem, kClusterSize, false, nullptr,
                             rounds, d_cycles);
    DSA_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<unsigned long long> c(clusters * kClusterSize);
    DSA_CUDA_CHECK(cudaMemcpy(c.data(), d_cycles, c.size() * sizeof(c[0]), cudaMemcpyDeviceToHost));
    for (auto v : c) per_round.push_back(static_cast<double>(v) / rounds);
  }
  std::sort(per_round.begin(), per_round.end());
  return per_round[per_round.size() / 2];
}

template <int kWay>
void report(const char* what, int clusters, int rounds, double none, unsigned long long* d_cycles) {
  const double c = cycles_per_round<kWay>(clusters, rounds, d_cycles);
  std::printf("%-16s %9d %12.0f %12.0f %14.1f\n", what, clusters, c, c - none, kRoundBytes / (c - none));
}

}  // namespace
}  // namespace dsa_indexer::cuda

int main(int argc, char** argv) {
  using namespace dsa_indexer::cuda;
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 2000;
  unsigned long long* d_cycles;
  DSA_CUDA_CHECK(cudaMalloc(&d_cycles, 15 * kClusterSize * sizeof(unsigned long long)));
  std::printf(
      "clusters of %d CTAs x %d threads, %u bytes stored per CTA per round, %d rounds; cycles per round "
      "(median over CTAs and 3 launches)\n",
      kClusterSize, kThreadsPerCta, kRoundBytes, rounds);
  std::printf("%-16s %9s %12s %12s %14s\n", "way", "clusters", "cycles", "above none", "bytes/cycle");
  for (int clusters : {1, 15}) {
    const double none = cycles_per_round<kNone>(clusters, rounds, d_cycles);
    std::printf("%-16s %9d %12.0f\n", "none", clusters, none);
    report<kStAsync>("st.async", clusters, rounds, none, d_cycles);
    report<kStAsyncSelf>("st.async self", clusters, rounds, none, d_cycles);
    report<kStRemote>("st remote", clusters, rounds, none, d_cycles);
    report<kStLocal>("st local", clusters, rounds, none, d_cycles);
    report<kBulk>("bulk", clusters, rounds, none, d_cycles);
    report<kBulkSelf>("bulk self", clusters, rounds, none, d_cycles);
    report<kPull>("pull", clusters, rounds, none, d_cycles);
  }
  DSA_CUDA_CHECK(cudaFree(d_cycles));
  return 0;
}
