// How many thread-block clusters of a given size fit on the device at once, for the shared-memory
// footprints of the sm_90a tiles (one CTA per SM): the number that sets the tile rounds of the
// persistent prefill kernel (src/cuda/NOTES.md, versions 22-24). Prints one line per (cluster
// size, shared memory, threads).
#include <cuda_runtime.h>

#include <cstdio>
#include <initializer_list>

#include "cuda/cuda_check.h"

namespace {

__global__ void cluster_probe_kernel() {
  extern __shared__ unsigned char smem[];
  if (threadIdx.x == 0) smem[0] = 0;
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
        attr.id = cudaLaunchAttributeClusterDimension;
        attr.val.clusterDim.x = cluster;
        attr.val.clusterDim.y = 1;
        attr.val.clusterDim.z = 1;
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(cluster);
        cfg.blockDim = dim3(threads);
        cfg.dynamicSmemBytes = static_cast<std::size_t>(smem_kb) << 10;
        cfg.attrs = &attr;
        cfg.numAttrs = 1;
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
  return 0;
}
