// How many thread-block clusters of a given size fit on the device at once, for the shared-memory
// footprints of the sm_90a tiles (one CTA per SM): the number that sets the tile rounds of the
// persistent prefill kernel (src/cuda/NOTES.md, versions 22-24). Prints one line per (cluster
// size, shared memory, threads). Then where the CTAs of grids of 8-CTA clusters land: with room for
// two CTAs per SM (the x2 tiles, 97-113 KB), does the hardware spread a small grid over distinct
// SMs or pack two CTAs onto one, halving what each CTA can pull from L2 (NOTES.md version 43)?
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <initializer_list>
#include <vector>

#include "cuda/cuda_check.h"

namespace {

__global__ void cluster_probe_kernel() {
  extern __shared__ unsigned char smem[];
  if (threadIdx.x == 0) smem[0] = 0;
}

// Records the SM of each CTA, then spins for `spin_ns` so that every CTA of the grid is resident
// at once (the grid is launched no larger than what fits).
__global__ void placement_kernel(int* smid, long long spin_ns) {
  if (threadIdx.x == 0) {
    unsigned id;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
    smid[blockIdx.x] = static_cast<int>(id);
    unsigned long long t0;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    for (unsigned long long t = t0; t - t0 < static_cast<unsigned long long>(spin_ns);) {
      asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    }
  }
}

// A launch of `ctas` CTAs in clusters of `cluster` with `smem_kb` of dynamic shared memory; `attr`
// (the cluster dimension) must outlive the configuration.
cudaLaunchConfig_t cluster_launch(int cluster, int ctas, int threads, int smem_kb, cudaLaunchAttribute& attr) {
  attr = {};
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = cluster;
  attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(ctas);
  cfg.blockDim = dim3(threads);
  cfg.dynamicSmemBytes = static_cast<std::size_t>(smem_kb) << 10;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  return cfg;
}

// Launches `clusters` clusters of 8 with `smem_kb` of shared memory and prints how many distinct
// SMs they use and how many SMs hold two or more of their CTAs.
void report_placement(int clusters, int smem_kb, int threads, int num_sms) {
  const int ctas = clusters * 8;
  int* d = nullptr;
  DSA_CUDA_CHECK(cudaMalloc(&d, ctas * sizeof(int)));
  cudaLaunchAttribute attr{};
  const cudaLaunchConfig_t cfg = cluster_launch(8, ctas, threads, smem_kb, attr);
  DSA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, placement_kernel, d, 200000LL));
  DSA_CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<int> smid(ctas);
  DSA_CUDA_CHECK(cudaMemcpy(smid.data(), d, ctas * sizeof(int), cudaMemcpyDeviceToHost));
  DSA_CUDA_CHECK(cudaFree(d));
  std::vector<int> per_sm(num_sms + 1, 0);
  for (int id : smid) ++per_sm[std::min(id, num_sms)];
  const int used = static_cast<int>(std::count_if(per_sm.begin(), per_sm.end(), [](int n) { return n > 0; }));
  const int doubled = static_cast<int>(std::count_if(per_sm.begin(), per_sm.end(), [](int n) { return n > 1; }));
  std::printf("%9d %10d %8d %10d %10d %16d\n", clusters, smem_kb, threads, ctas, used, doubled);
}

}  // namespace

int main() {
  int dev = 0;
  DSA_CUDA_CHECK(cudaSetDevice(dev));
  cudaDeviceProp prop;
  DSA_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  int max_smem = 0;
  DSA_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  DSA_CUDA_CHECK(cudaFuncSetAttribute(cluster_probe_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem));
  DSA_CUDA_CHECK(cudaFuncSetAttribute(cluster_probe_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  std::printf("device: %s, %d SMs, %d KB shared memory per block (opt-in)\n", prop.name, prop.multiProcessorCount,
              max_smem >> 10);
  std::printf("%8s %10s %8s %16s %12s\n", "cluster", "smem KB", "threads", "active clusters", "SMs used");
  for (int cluster : {1, 2, 4, 8, 16}) {
    for (int smem_kb : {100, 208, 224}) {
      for (int threads : {128, 256}) {
        cudaLaunchAttribute attr{};
        const cudaLaunchConfig_t cfg = cluster_launch(cluster, cluster, threads, smem_kb, attr);
        int n = 0;
        const cudaError_t e = cudaOccupancyMaxActiveClusters(&n, cluster_probe_kernel, &cfg);
        if (e != cudaSuccess) {
          std::printf("%8d %10d %8d %16s\n", cluster, smem_kb, threads, cudaGetErrorString(e));
          (void)cudaGetLastError();
          continue;
        }
        std::printf("%8d %10d %8d %16d %12d\n", cluster, smem_kb, threads, n, n * cluster);
      }
    }
  }
  DSA_CUDA_CHECK(cudaFuncSetAttribute(placement_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem));
  std::printf("\nplacement of clusters of 8 (one launch each, all CTAs resident at once)\n");
  std::printf("%9s %10s %8s %10s %10s %16s\n", "clusters", "smem KB", "threads", "CTAs", "SMs used", "SMs with >1 CTA");
  for (int smem_kb : {105, 113, 208}) {
    for (int clusters : {1, 4, 8, 12, 15, 16, 24, 30}) {
      if (smem_kb > 113 && clusters > 15) continue;  // one CTA per SM: 15 clusters fit
      report_placement(clusters, smem_kb, 128, prop.multiProcessorCount);
    }
  }
  return 0;
}
