// Dev tool: would TMA multicast cut the decode tiles' loads? Times CUDA-graph replays of back-to-back
// launches (programmatic dependent launch, as the head gate's kernel) of a kernel that only moves the
// bytes a 16-token x 32-head decode tiling moves at DeepSeek's shape (K = 7168 in 8 groups of 1792
// bytes, H = 64): CTA (token tile, head block, group) takes its 32 weight rows and 16 rows of x of
// one group into shared memory on one mbarrier, either as the decode tiles load (a 3-D box per
// 128-column chunk and operand) or by 1-D bulk copies, one per row; then the cluster meets at one
// barrier (where the kernel's reduction would be). Four ways to do it:
//   own8   clusters of 8 (one token tile and head block), every CTA issues its own loads;
//   own16  clusters of 16 (two token tiles of a head block), still every CTA its own loads: what
//          the larger cluster costs by itself;
//   w-mc   clusters of 16 as own16, the two CTAs of a group (ranks r and r + 8) each issue half of
//          their common weight with `.multicast::cluster` to both: the weight crosses L2 once per
//          two token tiles;
//   x-mc   clusters of 16 holding the two head blocks of a token tile, the pair of a group each
//          issue half of their common x to both.
// Before `griddepcontrol.wait` every CTA prefetches its rows into L2 (as the kernel does); the
// multicast ways also arrive on a cluster barrier there (their peers' mbarriers must be initialised
// before a multicast lands on them) and wait for it after. Sources warm (one region, in L2) or cold
// (launch i of a graph reads region i % 40 of buffers much larger than L2, as the benchmark rotates x
// and the weight).
// Build: cmake -B build -DDSA_INDEXER_BUILD_DEV=ON && cmake --build build --target multicast_probe
// Run:   ./build/dev/cuda/multicast_probe
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "cuda/cuda_check.h"
#include "dev_timing.h"

namespace dsa_indexer::cuda {
// Defined in sm90_logits_head_gate.cpp (the library is linked statically): the
// decode tiles' 3-D map.
CUtensorMap make_block_tensor_map(const std::uint16_t *base, int K, std::int64_t rows, std::int64_t ld, int box_rows,
                                  int box_blocks);
}  // namespace dsa_indexer::cuda

namespace {

constexpr int kGroupBytes = 1792, kPitch = 1808, kRowBytes = 14336, kHeads = 64, kHeadsPerCta = 32, kTokensPerCta = 16,
              kRegions = 40, kMaxT = 256;

enum Mode { kOwn8 = 0, kOwn16 = 1, kWeightMulticast = 2, kXMulticast = 3 };

__device__ __forceinline__ unsigned cluster_rank() {
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}

__device__ __forceinline__ void bulk_row(unsigned dst, const unsigned char *src, unsigned bar, unsigned short mask,
                                         bool multicast) {
  if (multicast) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::"
        "bytes.multicast::cluster [%0], [%1], %2, [%3], "
        "%4;\n" ::"r"(dst),
        "l"(src), "r"(kGroupBytes), "r"(bar), "h"(mask)
        : "memory");
  } else {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::"
        "bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
        "l"(src), "r"(kGroupBytes), "r"(bar)
        : "memory");
  }
}

__global__ void __launch_bounds__(256)
    load_kernel(const unsigned char *w, const unsigned char *x, int T, int mode, unsigned *out) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ __align__(8) unsigned long long bar;
  const unsigned bar_addr = static_cast<unsigned>(__cvta_generic_to_shared(&bar));
  const bool multicast = mode == kWeightMulticast || mode == kXMulticast;
  const int ntt = T / kTokensPerCta;
  const int csize = mode == kOwn8 ? 8 : 16;
  const int cl = blockIdx.x / csize;
  const int rank = static_cast<int>(cluster_rank());
  const int group = rank % 8,
            pair = rank / 8;  // pair: which of the two CTAs of a group (clusters of 16)
  int tt, hb;
  if (mode == kOwn8) {
    tt = cl % ntt, hb = cl / ntt;
  } else if (mode == kXMulticast) {
    tt = cl, hb = pair;  // H = 64: the two head blocks of a token tile
  } else {
    tt = 2 * (cl % (ntt / 2)) + pair, hb = cl / (ntt / 2);
  }
  // Rows this CTA issues: [w0, w0 + wn) of the weight, [x0, x0 + xn) of x (row
  // indices into the CTA's 32 + 16 destination rows: weight rows 0..31, x
  // rows 32..47).
  int w0 = 0, wn = kHeadsPerCta, x0 = 0, xn = kTokensPerCta;
  if (mode == kWeightMulticast) w0 = pair * (kHeadsPerCta / 2), wn = kHeadsPerCta / 2;
  if (mode == kXMulticast) x0 = pair * (kTokensPerCta / 2), xn = kTokensPerCta / 2;
  const unsigned char *wsrc = w + static_cast<size_t>(hb * kHeadsPerCta) * kRowBytes + group * kGroupBytes;
  const unsigned char *xsrc = x + static_cast<size_t>(tt * kTokensPerCta) * kRowBytes + group * kGroupBytes;
  const int t = threadIdx.x;  // thread t issues (and prefetches) row t of the
                              // ones this CTA issues
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar_addr) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  if (t < wn) {
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(wsrc + static_cast<size_t>(w0 + t) * kRowBytes),
                 "r"(kGroupBytes)
                 : "memory");
  } else if (t < wn + xn) {
    asm volatile(
        "cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(xsrc + static_cast<size_t>(x0 + t - wn) * kRowBytes),
        "r"(kGroupBytes)
        : "memory");
  }
  if (multicast) asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  if (multicast) asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory");
  __syncthreads();  // the mbarrier's init before the arrival
  const unsigned base = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const unsigned short mask = static_cast<unsigned short>((1u << group) | (1u << (group + 8)));
  // The tx-count may go below zero until the expected bytes are posted: the
  // phase cannot complete before thread 0's arrival, so the copies need not
  // wait for it.
  if (t == 0) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar_addr),
                 "r"((kHeadsPerCta + kTokensPerCta) * kGroupBytes)
                 : "memory");
  }
  if (t < wn) {
    bulk_row(base + (w0 + t) * kPitch, wsrc + static_cast<size_t>(w0 + t) * kRowBytes, bar_addr, mask,
             mode == kWeightMulticast);
  } else if (t < wn + xn) {
    const int r = x0 + t - wn;
    bulk_row(base + (kHeadsPerCta + r) * kPitch, xsrc + static_cast<size_t>(r) * kRowBytes, bar_addr, mask,
             mode == kXMulticast);
  }
  unsigned done = 0;
  const long long start = clock64();
  while (!done) {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 "
        "p, [%1], 0;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar_addr)
        : "memory");
    if (clock64() - start > 4000000000LL) __trap();  // ~2 s: a lost copy fails the run instead of hanging it
  }
  // Read a word of every row (as the chains would), then meet the cluster (as
  // the reduction would).
  unsigned acc = 0;
  if (threadIdx.x < kHeadsPerCta + kTokensPerCta)
    acc = reinterpret_cast<const unsigned *>(smem + threadIdx.x * kPitch)[1];
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
  if (acc == static_cast<unsigned>(T)) out[blockIdx.x] = acc;  // never true (bytes are 1): keeps the read
}

// The same loads as the decode tiles issue them since version 59: per
// 128-column chunk one 3-D box of the weight (32 rows x 2 blocks of 64 columns,
// 8 KB) and one of x (16 rows, 4 KB), issued by the first thread of warp c for
// chunk c, 128-byte swizzle, all on one mbarrier. The multicast ways give the
// chunks of the shared operand alternately to the two CTAs of a group (even
// chunks to the first).
constexpr int kChunks = 7, kWBox = kHeadsPerCta * 256, kXBox = kTokensPerCta * 256;

__device__ __forceinline__ void box(unsigned dst, const CUtensorMap *map, int row, int block, unsigned bar,
                                    unsigned short mask, bool multicast) {
  if (multicast) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::"
        "complete_tx::bytes.multicast::cluster [%0], [%1, "
        "{%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
        "l"(reinterpret_cast<std::uint64_t>(map)), "r"(0), "r"(row), "r"(block), "r"(bar), "h"(mask)
        : "memory");
  } else {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::"
        "bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
        "l"(reinterpret_cast<std::uint64_t>(map)), "r"(0), "r"(row), "r"(block), "r"(bar)
        : "memory");
  }
}

__global__ void __launch_bounds__(256)
    box_kernel(const __grid_constant__ CUtensorMap wmap, const __grid_constant__ CUtensorMap xmap, int T, int mode,
               unsigned *out) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  __shared__ __align__(8) unsigned long long bar;
  const unsigned bar_addr = static_cast<unsigned>(__cvta_generic_to_shared(&bar));
  const bool multicast = mode == kWeightMulticast || mode == kXMulticast;
  const int ntt = T / kTokensPerCta;
  const int cl = blockIdx.x / (mode == kOwn8 ? 8 : 16);
  const int rank = static_cast<int>(cluster_rank());
  const int group = rank % 8, pair = rank / 8;
  int tt, hb;
  if (mode == kOwn8) {
    tt = cl % ntt, hb = cl / ntt;
  } else if (mode == kXMulticast) {
    tt = cl, hb = pair;
  } else {
    tt = 2 * (cl % (ntt / 2)) + pair, hb = cl / (ntt / 2);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int block0 = group * 2 * kChunks + 2 * warp;  // first 64-column block of chunk `warp`
  const bool issues = warp < kChunks && lane == 0;
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar_addr) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  if (issues) {
    asm volatile("cp.async.bulk.prefetch.tensor.3d.L2.global [%0, {%1, %2, %3}];\n" ::"l"(
                     reinterpret_cast<std::uint64_t>(&wmap)),
                 "r"(0), "r"(hb * kHeadsPerCta), "r"(block0)
                 : "memory");
    asm volatile("cp.async.bulk.prefetch.tensor.3d.L2.global [%0, {%1, %2, %3}];\n" ::"l"(
                     reinterpret_cast<std::uint64_t>(&xmap)),
                 "r"(0), "r"(tt * kTokensPerCta), "r"(block0)
                 : "memory");
  }
  if (multicast) asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  if (multicast) asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory");
  __syncthreads();  // the mbarrier's init before the arrival
  const unsigned base = (static_cast<unsigned>(__cvta_generic_to_shared(smem_raw)) + 1023u) & ~1023u;
  const unsigned short mask = static_cast<unsigned short>((1u << group) | (1u << (group + 8)));
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar_addr),
                 "r"(kChunks * (kWBox + kXBox))
                 : "memory");
  }
  if (issues) {
    const bool mine = warp % 2 == pair;  // multicast ways: this CTA issues the shared operand's chunk
    if (mode != kWeightMulticast || mine)
      box(base + warp * kWBox, &wmap, hb * kHeadsPerCta, block0, bar_addr, mask, mode == kWeightMulticast);
    if (mode != kXMulticast || mine)
      box(base + kChunks * kWBox + warp * kXBox, &xmap, tt * kTokensPerCta, block0, bar_addr, mask,
          mode == kXMulticast);
  }
  unsigned done = 0;
  const long long start = clock64();
  while (!done) {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 "
        "p, [%1], 0;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar_addr)
        : "memory");
    if (clock64() - start > 4000000000LL) __trap();
  }
  const unsigned char *smem = smem_raw + (base - static_cast<unsigned>(__cvta_generic_to_shared(smem_raw)));
  unsigned acc = reinterpret_cast<const unsigned *>(smem)[threadIdx.x * 84];  // a word every 336 bytes
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
  if (acc == static_cast<unsigned>(T)) out[blockIdx.x] = acc;
}

constexpr int kBoxSmem = kChunks * (kWBox + kXBox) + 1024;

void launch_box(int T, int mode, bool cold, int index, const std::vector<CUtensorMap> &wmaps,
                const std::vector<CUtensorMap> &xmaps, unsigned *out, cudaStream_t s) {
  cudaLaunchAttribute attrs[2] = {};
  attrs[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attrs[0].val.programmaticStreamSerializationAllowed = 1;
  attrs[1].id = cudaLaunchAttributeClusterDimension;
  attrs[1].val.clusterDim.x = mode == kOwn8 ? 8 : 16;
  attrs[1].val.clusterDim.y = 1;
  attrs[1].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(8 * (T / kTokensPerCta) * (kHeads / kHeadsPerCta));
  cfg.blockDim = dim3(256);
  cfg.dynamicSmemBytes = kBoxSmem;
  cfg.stream = s;
  cfg.attrs = attrs;
  cfg.numAttrs = 2;
  const int region = cold ? index % kRegions : 0;
  DSA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, box_kernel, wmaps[region], xmaps[region], T, mode, out));
}

void launch(int T, int mode, bool cold, int index, const unsigned char *w, const unsigned char *x, unsigned *out,
            cudaStream_t s) {
  cudaLaunchAttribute attrs[2] = {};
  attrs[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attrs[0].val.programmaticStreamSerializationAllowed = 1;
  attrs[1].id = cudaLaunchAttributeClusterDimension;
  attrs[1].val.clusterDim.x = mode == kOwn8 ? 8 : 16;
  attrs[1].val.clusterDim.y = 1;
  attrs[1].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(8 * (T / kTokensPerCta) * (kHeads / kHeadsPerCta));
  cfg.blockDim = dim3(256);
  cfg.dynamicSmemBytes = (kHeadsPerCta + kTokensPerCta) * kPitch;
  cfg.stream = s;
  cfg.attrs = attrs;
  cfg.numAttrs = 2;
  const size_t region = cold ? static_cast<size_t>(index % kRegions) : 0;
  DSA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, load_kernel, w + region * kHeads * kRowBytes, x + region * kMaxT * kRowBytes,
                                    T, mode, out));
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  DSA_CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop;
  DSA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  DSA_CUDA_CHECK(cudaFuncSetAttribute(load_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      (kHeadsPerCta + kTokensPerCta) * kPitch));
  DSA_CUDA_CHECK(cudaFuncSetAttribute(load_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  DSA_CUDA_CHECK(cudaFuncSetAttribute(box_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kBoxSmem));
  DSA_CUDA_CHECK(cudaFuncSetAttribute(box_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  unsigned char *w, *x;
  unsigned *out;
  DSA_CUDA_CHECK(cudaMalloc(&w, static_cast<size_t>(kRegions) * kHeads * kRowBytes));
  DSA_CUDA_CHECK(cudaMalloc(&x, static_cast<size_t>(kRegions) * kMaxT * kRowBytes));
  DSA_CUDA_CHECK(cudaMalloc(&out, 8 * 64 * sizeof(unsigned)));
  DSA_CUDA_CHECK(cudaMemset(w, 1, static_cast<size_t>(kRegions) * kHeads * kRowBytes));
  DSA_CUDA_CHECK(cudaMemset(x, 1, static_cast<size_t>(kRegions) * kMaxT * kRowBytes));
  cudaStream_t s;
  DSA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  std::vector<CUtensorMap> wmaps, xmaps;
  for (int r = 0; r < kRegions; ++r) {
    const auto *wr = reinterpret_cast<const std::uint16_t *>(w + static_cast<size_t>(r) * kHeads * kRowBytes);
    const auto *xr = reinterpret_cast<const std::uint16_t *>(x + static_cast<size_t>(r) * kMaxT * kRowBytes);
    wmaps.push_back(
        dsa_indexer::cuda::make_block_tensor_map(wr, kRowBytes / 2, kHeads, kRowBytes / 2, kHeadsPerCta, 2));
    xmaps.push_back(
        dsa_indexer::cuda::make_block_tensor_map(xr, kRowBytes / 2, kMaxT, kRowBytes / 2, kTokensPerCta, 2));
  }
  const char *names[] = {"own8", "own16", "w-mc", "x-mc"};
  for (bool boxes : {true, false}) {
    std::printf(
        "\n== us per launch (graph replay of 20), loads of a 16 x 32 "
        "decode tiling at K = 7168, H = 64, %s; "
        "best of 3 runs, A B C D order repeated ==\n%6s %5s",
        boxes ? "a 3-D box per chunk and operand (as the kernel)" : "a 1-D bulk copy per row", "T", "src");
    for (const char *n : names) std::printf(" %8s", n);
    std::printf("   L2 -> SM MB (own / w-mc / x-mc)\n");
    for (int T : {32, 64, 128, 256}) {
      for (bool cold : {false, true}) {
        double best[4] = {1e9, 1e9, 1e9, 1e9};
        for (int rep = 0; rep < 3; ++rep) {
          for (int mode = 0; mode < 4; ++mode) {
            const double us = dsa_dev::time_graph(s, 20, [&](int i) {
              if (boxes) {
                launch_box(T, mode, cold, i, wmaps, xmaps, out, s);
              } else {
                launch(T, mode, cold, i, w, x, out, s);
              }
            });
            if (us < best[mode]) best[mode] = us;
          }
        }
        const double ctas = 8.0 * (T / kTokensPerCta) * (kHeads / kHeadsPerCta);
        const double own = ctas * (kHeadsPerCta + kTokensPerCta) * kGroupBytes / 1e6;
        std::printf("%6d %5s", T, cold ? "cold" : "warm");
        for (double b : best) std::printf(" %8.2f", b);
        std::printf("   %.1f / %.1f / %.1f\n", own, own - ctas * kHeadsPerCta / 2 * kGroupBytes / 1e6,
                    own - ctas * kTokensPerCta / 2 * kGroupBytes / 1e6);
      }
    }
  }
  DSA_CUDA_CHECK(cudaStreamDestroy(s));
  DSA_CUDA_CHECK(cudaFree(w));
  DSA_CUDA_CHECK(cudaFree(x));
  DSA_CUDA_CHECK(cudaFree(out));
  return 0;
}
