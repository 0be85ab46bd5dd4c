// Dev tool: what the decode tiles' loads cost before any arithmetic. Times CUDA-graph replays of
// back-to-back launches (programmatic dependent launch, as the head gate's kernel) of a kernel that
// only moves bytes: each CTA copies rows of 1792 bytes (one K group of a DeepSeek row) from an
// L2-resident buffer into shared memory, with 16-byte cp.async from all threads (as the decode
// tiles do) or one 1-D bulk copy per row, then the cluster meets at one barrier. Rows of a table: clusters
// of 8 per launch; columns: KB per CTA. One table per load method and shared-memory footprint (which
// sets the CTAs per SM), one with clusters of 1 (same CTAs, no cluster); then rows of its own per
// CTA against rows shared between clusters as a 16 x h decode tiling shares them; rows in L2 against
// rows from HBM, with bulk copies of whole rows or of 256-byte pieces; the same CTAs in clusters of 16
// copying half the rows (a finer K split). Last, where the CTAs of one launch land: CTAs per SM, from
// %smid.
// Build: cmake -B build -DDSA_INDEXER_BUILD_DEV=ON && cmake --build build --target decode_probe
// Run:   ./build/dev/cuda/decode_probe
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <vector>

#include "cuda/cuda_check.h"
#include "dev_timing.h"

namespace {

__device__ __forceinline__ unsigned smid() {
  unsigned r;
  asm volatile("mov.u32 %0, %%smid;\n" : "=r"(r));
  return r;
}

// Copies `rows` rows of 1792 bytes (one K group of a DeepSeek row: 896 bf16) into shared memory at a
// pitch of 1808 bytes (wrapping inside the dynamic shared memory), either with 16-byte cp.async from
// all threads (kBulk false, as the decode tiles load) or with one 1-D bulk copy per row completing on
// an mbarrier (kBulk true).
constexpr int kRowBytes = 1792, kPitch = 1808, kSrcPitch = 14336;
template <bool kBulk>
__global__ void __launch_bounds__(256) load_kernel(const unsigned char* buf, int buf_rows, int rows, int smem_rows,
                                                  int clustered, int shared, int piece, unsigned* where,
                                                  unsigned* out) {
  extern __shared__ __align__(16) unsigned char smem[];
  __shared__ __align__(8) unsigned long long bar;
  const unsigned bar_addr = static_cast<unsigned>(__cvta_generic_to_shared(&bar));
  if (kBulk && threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar_addr) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  const int cta = blockIdx.x;
  // Rows of its own per CTA, or (shared) as a 16 x h decode tiling at 4 head groups x 4 token
  // tiles reads them: the first half of a CTA's rows (its weight rows) is the same for the 4
  // clusters of a head group (cluster / 4), the second half (its x rows) the same for the 4
  // clusters of a token tile (cluster % 4); rank = K group = column block.
  const auto src_row = [&](int r) {
    int row = (cta * rows + r) % buf_rows;
    if (shared) {
      const int cluster = cta / 8, half = rows / 2;
      row = r < half ? (cluster / 4) * half + r : 512 + (cluster % 4) * half + (r - half);
    }
    return buf + static_cast<std::size_t>(row) * kSrcPitch + (cta % 8) * kRowBytes;
  };
  const unsigned base = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  if constexpr (kBulk) {
    __syncthreads();  // the mbarrier's init before any arrival
    if (threadIdx.x == 0 && rows > 0) {
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar_addr), "r"(rows * kRowBytes)
                   : "memory");
    }
    __syncthreads();
    // `piece` bytes per copy: a row whole (1792) or cut into pieces issued by different threads.
    const int pieces = kRowBytes / piece;
    for (int i = threadIdx.x; i < rows * pieces; i += blockDim.x) {
      const int r = i / pieces, q = i % pieces;
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                       base + (r % smem_rows) * kPitch + q * piece),
                   "l"(src_row(r) + q * piece), "r"(piece), "r"(bar_addr)
                   : "memory");
    }
    if (rows > 0) {
      unsigned done = 0;
      while (!done) {
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0;\n selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(bar_addr)
                     : "memory");
      }
    }
  } else {
    constexpr int kVecsPerRow = kRowBytes / 16;
    for (int i = threadIdx.x; i < rows * kVecsPerRow; i += blockDim.x) {
      const int r = i / kVecsPerRow, v = i % kVecsPerRow;
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(base + (r % smem_rows) * kPitch + 16 * v),
                   "l"(src_row(r) + 16 * v)
                   : "memory");
    }
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
  }
  __syncthreads();
  if (clustered) {
    asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
    asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
  }
  if (threadIdx.x == 0) {
    out[cta] = smem[0] ^ smem[kPitch * ((rows + smem_rows - 1) % smem_rows) + 5];
    if (where) where[cta] = smid();
  }
}

struct Launch {
  int clusters;   // clusters of `cluster` CTAs (total CTAs = 8 * clusters either way)
  int cluster;    // 8 or 1
  int rows;       // rows of 1792 bytes each CTA copies
  int smem_kb;    // dynamic shared memory per CTA, KB (raised to hold the rows)
  bool bulk;      // 1-D bulk copies instead of 16-byte cp.async
  bool shared = false;  // rows shared between clusters as a decode tiling shares them (load_kernel)
  int piece = kRowBytes;  // bytes per bulk copy (a divisor of kRowBytes)
  int cold = 0;           // > 0: launch i of a graph reads region i % cold of a buffer much larger than L2
};

void launch(const Launch& l, const unsigned char* buf, int buf_rows, unsigned* where, unsigned* out,
            cudaStream_t s, int index = 0) {
  cudaLaunchAttribute attrs[2] = {};
  attrs[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attrs[0].val.programmaticStreamSerializationAllowed = 1;
  attrs[1].id = cudaLaunchAttributeClusterDimension;
  attrs[1].val.clusterDim.x = l.cluster;
  attrs[1].val.clusterDim.y = 1;
  attrs[1].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(8 * l.clusters);  // clusters of 16: half as many clusters, same CTAs
  cfg.blockDim = dim3(256);
  const std::size_t smem = std::max<std::size_t>(static_cast<std::size_t>(l.smem_kb) << 10,
                                                 static_cast<std::size_t>(std::max(l.rows, 1)) * kPitch);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attrs;
  cfg.numAttrs = 2;
  const int smem_rows = static_cast<int>(smem / kPitch);
  const unsigned char* src = l.cold > 0 ? buf + static_cast<std::size_t>(index % l.cold) * buf_rows * kSrcPitch : buf;
  DSA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, l.bulk ? load_kernel<true> : load_kernel<false>, src, buf_rows, l.rows,
                                    smem_rows, l.cluster > 1 ? 1 : 0, l.shared ? 1 : 0, l.piece, where, out));
}

// Median microseconds per launch over replays of a graph of 20 back-to-back launches.
double time_graph(const Launch& l, const unsigned char* buf, int buf_rows, unsigned* out, cudaStream_t s) {
  return dsa_dev::time_graph(s, 20, [&](int i) { launch(l, buf, buf_rows, nullptr, out, s, i); });
}

}  // namespace

int main() {
  DSA_CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop;
  DSA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  int max_smem = 0;
  DSA_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0));
  for (auto k : {load_kernel<false>, load_kernel<true>}) {
    DSA_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem - 1024));
    DSA_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));  // clusters of 16
  }
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  constexpr int kBufRows = 1170;  // 16 MB of 14336-byte rows: stays in L2 once touched
  unsigned char* buf;
  unsigned *out, *where;
  // kCold regions of kBufRows rows: 20 launches of a graph read 20 different regions (320 MB), so a
  // region is evicted from L2 before its next read (cold tables); the other tables read region 0.
  constexpr int kCold = 20;
  DSA_CUDA_CHECK(cudaMalloc(&buf, static_cast<std::size_t>(kCold) * kBufRows * kSrcPitch));
  DSA_CUDA_CHECK(cudaMemset(buf, 1, static_cast<std::size_t>(kCold) * kBufRows * kSrcPitch));
  DSA_CUDA_CHECK(cudaMalloc(&out, 8 * 64 * sizeof(unsigned)));
  DSA_CUDA_CHECK(cudaMalloc(&where, 8 * 64 * sizeof(unsigned)));
  cudaStream_t s;
  DSA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

  const int clusters[] = {1, 4, 8, 12, 16, 24, 32, 48};
  const int rows[] = {0, 8, 16, 32, 48, 64};
  struct Table {
    int cluster, smem_kb;
    bool bulk;
    const char* what;
  };
  const Table tables[] = {{8, 74, false, "clusters of 8, 74 KB shared memory (3 CTAs per SM), 16-byte cp.async"},
                          {8, 74, true, "clusters of 8, 74 KB, 1-D bulk copy per row"},
                          {8, 112, true, "clusters of 8, 112 KB (2 per SM), 1-D bulk copy per row"},
                          {1, 74, true, "no cluster (8 x rows CTAs), 74 KB, 1-D bulk copy per row"}};
  for (const Table& t : tables) {
    std::printf("\n== %s; us per launch (graph replay), rows: clusters of 8 CTAs (or 8 x that many CTAs), "
                "columns: KB copied per CTA (rows of 1792 bytes; smem raised to fit) ==\n%8s", t.what, "clusters");
    for (int r : rows) std::printf(" %8.1fKB", r * kRowBytes / 1024.0);
    std::printf("\n");
    for (int c : clusters) {
      std::printf("%8d", c);
      for (int r : rows) std::printf(" %10.2f", time_graph({c, t.cluster, r, t.smem_kb, t.bulk}, buf, kBufRows, out, s));
      std::printf("\n");
      std::fflush(stdout);
    }
  }

  std::printf("\n== rows of its own per CTA against rows shared as a decode tiling shares them (half the rows "
              "by the 4 clusters of a head group, half by the 4 of a token tile); clusters of 8, 74 KB; us per launch ==\n");
  std::printf("%8s %6s %10s %10s %10s %10s\n", "clusters", "rows", "cp.async", "cp.a.shared", "bulk", "bulk shared");
  for (int c : {8, 16}) {
    for (int r : {16, 32, 48}) {
      std::printf("%8d %6d", c, r);
      for (bool bulk : {false, true})
        for (bool shared : {false, true})
          std::printf(" %10.2f", time_graph({c, 8, r, 74, bulk, shared}, buf, kBufRows, out, s));
      std::printf("\n");
    }
  }

  std::printf("\n== source in L2 (warm) or in HBM (cold: each launch of the graph reads other rows), and bulk copies "
              "of whole rows or of 256-byte pieces; clusters of 8, 74 KB; us per launch ==\n");
  std::printf("%8s %6s %9s %9s %9s %9s %9s %9s\n", "clusters", "rows", "cpa warm", "cpa cold", "bulk warm", "bulk cold",
              "b256 warm", "b256 cold");
  for (int c : {1, 8, 16, 32}) {
    for (int r : {8, 16, 32, 48}) {
      std::printf("%8d %6d", c, r);
      for (int piece : {0, kRowBytes, 256})
        for (int cold : {0, kCold}) {
          Launch l{c, 8, r, 74, piece > 0};
          l.piece = piece > 0 ? piece : kRowBytes;
          l.cold = cold;
          std::printf(" %9.2f", time_graph(l, buf, kBufRows, out, s));
        }
      std::printf("\n");
      std::fflush(stdout);
    }
  }

  std::printf("\n== a finer K split (NOTES.md lead 2): the same CTAs in clusters of 16 copying half the rows of "
              "clusters of 8 (half a K group each); cold source; us per launch ==\n");
  std::printf("%6s %8s %6s %9s %9s %9s\n", "CTAs", "cluster", "rows", "cp.async", "bulk", "bulk256");
  for (int ctas : {64, 128, 256}) {
    for (int cluster : {8, 16}) {
      for (int r : {8, 16, 32}) {
        std::printf("%6d %8d %6d", ctas, cluster, r);
        for (int piece : {0, kRowBytes, 256}) {
          Launch l{ctas / 8, cluster, r, 74, piece > 0};
          l.piece = piece > 0 ? piece : kRowBytes;
          l.cold = kCold;
          std::printf(" %9.2f", time_graph(l, buf, kBufRows, out, s));
        }
        std::printf("\n");
        std::fflush(stdout);
      }
    }
  }

  std::printf("\n== placement of one launch: CTAs per SM (histogram) ==\n");
  for (int smem_kb : {52, 74, 106, 150}) {
    for (int c : {8, 16, 32}) {
      for (int cluster : {8, 1}) {
        // On s: a cudaMemset goes to the legacy stream, which the non-blocking s does not wait for.
        DSA_CUDA_CHECK(cudaMemsetAsync(where, 0xff, 8 * 64 * sizeof(unsigned), s));
        launch({c, cluster, 16, smem_kb, false}, buf, kBufRows, where, out, s);
        DSA_CUDA_CHECK(cudaStreamSynchronize(s));
        std::vector<unsigned> w(8 * c);
        DSA_CUDA_CHECK(cudaMemcpy(w.data(), where, w.size() * sizeof(unsigned), cudaMemcpyDeviceToHost));
        std::map<unsigned, int> per_sm;
        for (unsigned sm : w) ++per_sm[sm];
        std::map<int, int> hist;
        for (const auto& kv : per_sm) ++hist[kv.second];
        std::printf("smem %3d KB, %2d clusters of %d: %3zu SMs used;", smem_kb, c, cluster, per_sm.size());
        for (const auto& kv : hist) std::printf(" %d SMs x %d CTAs", kv.second, kv.first);
        std::printf("\n");
      }
    }
  }
  DSA_CUDA_CHECK(cudaStreamDestroy(s));
  DSA_CUDA_CHECK(cudaFree(buf));
  DSA_CUDA_CHECK(cudaFree(out));
  DSA_CUDA_CHECK(cudaFree(where));
  return 0;
}
