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
// and the weight). Last, the loads alone of other tilings (tokens x heads per CTA, K in 8 or 4
// groups), every CTA loading its own boxes: what any tiling of that kind pays before arithmetic.
// Build: cmake -B build -DDSA_INDEXER_BUILD_DEV=ON && cmake --build build --target multicast_probe
// Run:   ./build/dev/cuda/multicast_probe
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <vector>

#include "cuda/cuda_check.h"
#include "dev_timing.h"

namespace dsa_indexer::cuda {
// Defined in sm90_logits_head_gate.cpp (the library is linked statically): the decode tiles' 3-D map.
CUtensorMap make_block_tensor_map(const std::uint16_t* base, int K, std::int64_t rows, std::int64_t ld, int box_rows,
                                  int box_blocks);
}  // namespace dsa_indexer::cuda

namespace {

constexpr int kGroupBytes = 1792, kPitch = 1808, kRowBytes = 14336, kHeads = 64, kHeadsPerCta = 32, kTokensPerCta = 16,
              kRegions = 40, kMaxT = 256;

enum Mode { kOwn8 = 0, kOwn16 = 1, kWeightMulticast = 2, kXMulticast = 3 };

// Where a CTA's bytes come from: its token tile, head block and K group, and which CTA of its
// group's pair it is (clusters of 16).
struct Place {
  int tt, hb, group, pair;
};

__device__ __forceinline__ Place place(int T, int mode) {
  unsigned rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
  const int ntt = T / kTokensPerCta;
  const int cl = blockIdx.x / (mode == kOwn8 ? 8 : 16);
  Place p{0, 0, static_cast<int>(rank % 8), static_cast<int>(rank / 8)};
  if (mode == kOwn8) {
    p.tt = cl % ntt, p.hb = cl / ntt;
  } else if (mode == kXMulticast) {
    p.tt = cl, p.hb = p.pair;  // H = 64: the two head blocks of a token tile
  } else {
    p.tt = 2 * (cl % (ntt / 2)) + p.pair, p.hb = cl / (ntt / 2);
  }
  return p;
}

__device__ __forceinline__ unsigned short pair_mask(const Place& p) {
  return static_cast<unsigned short>((1u << p.group) | (1u << (p.group + 8)));
}

__device__ __forceinline__ void bar_init(unsigned bar) {
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
}

// After the prefetches: wait for the previous launch and release the next, as the kernel does. The
// multicast ways also meet their cluster, so that no multicast lands on a peer's mbarrier before
// its init. Then thread 0 posts the CTA's bytes; the tx-count may go below zero until then (the
// phase cannot complete before thread 0's arrival), so the copies need not wait for it.
__device__ __forceinline__ void start(unsigned bar, bool multicast, unsigned bytes) {
  if (multicast) asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  if (multicast) asm volatile("barrier.cluster.wait.aligned;\n" ::: "memory");
  __syncthreads();  // the mbarrier's init before the arrival
  if (threadIdx.x == 0) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
  }
}

// Waits for the CTA's bytes (a lost copy traps after ~2 s instead of hanging the run), reads a word
// every `stride` bytes as the chains would, then meets the cluster as the reduction would.
__device__ __forceinline__ void finish(unsigned bar, const unsigned char* smem, int stride, int T, unsigned* out) {
  unsigned done = 0;
  const long long t0 = clock64();
  while (!done) {
    asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0;\n selp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(done)
                 : "r"(bar)
                 : "memory");
    if (clock64() - t0 > 4000000000LL) __trap();
  }
  const unsigned acc = *reinterpret_cast<const unsigned*>(smem + threadIdx.x * stride + 4);
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
  if (acc == static_cast<unsigned>(T)) out[blockIdx.x] = acc;  // never true (bytes are 1): keeps the read
}

// Rows of 1792 bytes at a pitch of 1808, one 1-D bulk copy each: weight rows 0-31, x rows 32-47.
__device__ __forceinline__ void bulk_row(unsigned dst, const unsigned char* src, unsigned bar, unsigned short mask,
                                         bool multicast) {
  if (multicast) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1], %2, [%3], "
        "%4;\n" ::"r"(dst),
        "l"(src), "r"(kGroupBytes), "r"(bar), "h"(mask)
        : "memory");
  } else {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
                 "l"(src), "r"(kGroupBytes), "r"(bar)
                 : "memory");
  }
}

constexpr int kRowSmem = (kHeadsPerCta + kTokensPerCta) * kPitch;

__global__ void __launch_bounds__(256)
    row_kernel(const unsigned char* w, const unsigned char* x, int T, int mode, unsigned* out) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ __align__(8) unsigned long long bar_word;
  const unsigned bar = static_cast<unsigned>(__cvta_generic_to_shared(&bar_word));
  const Place p = place(T, mode);
  // Rows this CTA issues (thread t the t-th of them): [w0, w0 + wn) of the weight's 32, then
  // [x0, x0 + xn) of x's 16.
  int w0 = 0, wn = kHeadsPerCta, x0 = 0, xn = kTokensPerCta;
  if (mode == kWeightMulticast) w0 = p.pair * (kHeadsPerCta / 2), wn = kHeadsPerCta / 2;
  if (mode == kXMulticast) x0 = p.pair * (kTokensPerCta / 2), xn = kTokensPerCta / 2;
  const int t = threadIdx.x;
  const bool is_w = t < wn, is_x = !is_w && t < wn + xn;
  const int r = is_w ? w0 + t : x0 + t - wn;  // the row among the operand's
  const unsigned char* src = is_w ? w + static_cast<size_t>(p.hb * kHeadsPerCta + r) * kRowBytes
                                  : x + static_cast<size_t>(p.tt * kTokensPerCta + r) * kRowBytes;
  src += p.group * kGroupBytes;
  bar_init(bar);
  if (is_w || is_x)
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(src), "r"(kGroupBytes) : "memory");
  start(bar, mode == kWeightMulticast || mode == kXMulticast, kRowSmem / kPitch * kGroupBytes);
  const unsigned base = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  if (is_w || is_x) {
    bulk_row(base + (is_w ? r : kHeadsPerCta + r) * kPitch, src, bar, pair_mask(p),
             mode == (is_w ? kWeightMulticast : kXMulticast));
  }
  finish(bar, smem, threadIdx.x < kHeadsPerCta + kTokensPerCta ? kPitch : 0, T, out);
}

// The same loads as the decode tiles issue them since version 59: per 128-column chunk one 3-D box
// of the weight (32 rows x 2 blocks of 64 columns, 8 KB) and one of x (16 rows, 4 KB), issued by
// the first thread of warp c for chunk c, 128-byte swizzle, all on one mbarrier. The multicast ways
// give the chunks of the shared operand alternately to the two CTAs of a group (even chunks to the
// first).
constexpr int kChunks = 7, kWBox = kHeadsPerCta * 256, kXBox = kTokensPerCta * 256;
constexpr int kBoxSmem = kChunks * (kWBox + kXBox) + 1024;

__device__ __forceinline__ void box(unsigned dst, const CUtensorMap* map, int row, int block, unsigned bar,
                                    unsigned short mask, bool multicast) {
  const auto m = reinterpret_cast<std::uint64_t>(map);
  if (multicast) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, "
        "{%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
        "l"(m), "r"(0), "r"(row), "r"(block), "r"(bar), "h"(mask)
        : "memory");
  } else {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
        "[%5];\n" ::"r"(dst),
        "l"(m), "r"(0), "r"(row), "r"(block), "r"(bar)
        : "memory");
  }
}

__device__ __forceinline__ void prefetch_box(const CUtensorMap* map, int row, int block) {
  asm volatile(
      "cp.async.bulk.prefetch.tensor.3d.L2.global [%0, {%1, %2, %3}];\n" ::"l"(reinterpret_cast<std::uint64_t>(map)),
      "r"(0), "r"(row), "r"(block)
      : "memory");
}

__global__ void __launch_bounds__(256)
    box_kernel(const __grid_constant__ CUtensorMap wmap, const __grid_constant__ CUtensorMap xmap, int T, int mode,
               unsigned* out) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  __shared__ __align__(8) unsigned long long bar_word;
  const unsigned bar = static_cast<unsigned>(__cvta_generic_to_shared(&bar_word));
  const Place p = place(T, mode);
  const int warp = threadIdx.x / 32;
  const int block0 = p.group * 2 * kChunks + 2 * warp;  // first 64-column block of chunk `warp`
  const bool issues = warp < kChunks && threadIdx.x % 32 == 0;
  bar_init(bar);
  if (issues) {
    prefetch_box(&wmap, p.hb * kHeadsPerCta, block0);
    prefetch_box(&xmap, p.tt * kTokensPerCta, block0);
  }
  start(bar, mode == kWeightMulticast || mode == kXMulticast, kChunks * (kWBox + kXBox));
  const unsigned raw = static_cast<unsigned>(__cvta_generic_to_shared(smem_raw));
  const unsigned base = (raw + 1023u) & ~1023u;  // the 128-byte swizzle's 1 KB alignment
  if (issues) {
    const bool mine = warp % 2 == p.pair;  // multicast ways: this CTA issues the shared operand's chunk
    if (mode != kWeightMulticast || mine)
      box(base + warp * kWBox, &wmap, p.hb * kHeadsPerCta, block0, bar, pair_mask(p), mode == kWeightMulticast);
    if (mode != kXMulticast || mine)
      box(base + kChunks * kWBox + warp * kXBox, &xmap, p.tt * kTokensPerCta, block0, bar, pair_mask(p),
          mode == kXMulticast);
  }
  finish(bar, smem_raw + (base - raw), 336, T, out);  // a word every 336 bytes
}

// Other tilings, every CTA loading its own bytes as the kernel's boxes do: `tokens` x `heads` per
// CTA, K in `groups` groups (clusters of that many CTAs, one group each), chunk c of a CTA's
// 56 / groups issued by warp c % 8.
__global__ void __launch_bounds__(256)
    tiling_kernel(const __grid_constant__ CUtensorMap wmap, const __grid_constant__ CUtensorMap xmap, int T, int tokens,
                  int heads, int groups, unsigned* out) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  __shared__ __align__(8) unsigned long long bar_word;
  const unsigned bar = static_cast<unsigned>(__cvta_generic_to_shared(&bar_word));
  unsigned rank;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
  const int ntt = (T + tokens - 1) / tokens, cl = blockIdx.x / groups;
  const int row_x = (cl % ntt) * tokens, row_w = (cl / ntt) * heads;
  const int chunks = kRowBytes / 256 / groups, warp = threadIdx.x / 32;
  const bool issues = threadIdx.x % 32 == 0;
  const auto block0 = [&](int c) { return static_cast<int>(rank) * 2 * chunks + 2 * c; };
  bar_init(bar);
  if (issues) {
    for (int c = warp; c < chunks; c += 8) {
      prefetch_box(&wmap, row_w, block0(c));
      prefetch_box(&xmap, row_x, block0(c));
    }
  }
  const int bytes = chunks * (heads + tokens) * 256;
  start(bar, false, bytes);
  const unsigned raw = static_cast<unsigned>(__cvta_generic_to_shared(smem_raw));
  const unsigned base = (raw + 1023u) & ~1023u;
  if (issues) {
    for (int c = warp; c < chunks; c += 8) {
      box(base + c * heads * 256, &wmap, row_w, block0(c), bar, 0, false);
      box(base + (chunks * heads + c * tokens) * 256, &xmap, row_x, block0(c), bar, 0, false);
    }
  }
  finish(bar, smem_raw + (base - raw), bytes / 256 / 4 * 4, T, out);
}

// One launch of `ctas` CTAs of 256 threads in clusters of `cluster`, programmatic dependent launch
// as the head gate's kernel.
template <class K, class... Args>
void launch(K kernel, int smem, int cluster, int ctas, cudaStream_t s, Args... args) {
  dsa_dev::launch_clusters(kernel, dim3(ctas), dim3(256), smem, cluster, true, s, args...);
}

}  // namespace

int main() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  DSA_CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop;
  DSA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  DSA_CUDA_CHECK(cudaFuncSetAttribute(row_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kRowSmem));
  DSA_CUDA_CHECK(cudaFuncSetAttribute(row_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  DSA_CUDA_CHECK(cudaFuncSetAttribute(box_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kBoxSmem));
  DSA_CUDA_CHECK(cudaFuncSetAttribute(box_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  const size_t w_region = static_cast<size_t>(kHeads) * kRowBytes, x_region = static_cast<size_t>(kMaxT) * kRowBytes;
  unsigned char *w, *x;
  unsigned* out;
  DSA_CUDA_CHECK(cudaMalloc(&w, kRegions * w_region));
  DSA_CUDA_CHECK(cudaMalloc(&x, kRegions * x_region));
  DSA_CUDA_CHECK(cudaMalloc(&out, 8 * 64 * sizeof(unsigned)));
  DSA_CUDA_CHECK(cudaMemset(w, 1, kRegions * w_region));
  DSA_CUDA_CHECK(cudaMemset(x, 1, kRegions * x_region));
  cudaStream_t s;
  DSA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  // Tensor maps by box rows (16, 32 or 64) and region: wmaps[rows][region], xmaps[rows][region].
  std::map<int, std::vector<CUtensorMap>> wmaps, xmaps;
  for (int rows : {16, 32, 64}) {
    for (int r = 0; r < kRegions; ++r) {
      const auto* wr = reinterpret_cast<const std::uint16_t*>(w + r * w_region);
      const auto* xr = reinterpret_cast<const std::uint16_t*>(x + r * x_region);
      wmaps[rows].push_back(
          dsa_indexer::cuda::make_block_tensor_map(wr, kRowBytes / 2, kHeads, kRowBytes / 2, rows, 2));
      xmaps[rows].push_back(dsa_indexer::cuda::make_block_tensor_map(xr, kRowBytes / 2, kMaxT, kRowBytes / 2, rows, 2));
    }
  }
  const char* names[] = {"own8", "own16", "w-mc", "x-mc"};
  for (bool boxes : {true, false}) {
    std::printf(
        "\n== us per launch (graph replay of 20), loads of a 16 x 32 decode tiling at K = 7168, H = 64, %s; "
        "best of 3 runs, A B C D order repeated ==\n%6s %5s",
        boxes ? "a 3-D box per chunk and operand (as the kernel)" : "a 1-D bulk copy per row", "T", "src");
    for (const char* n : names) std::printf(" %8s", n);
    std::printf("   L2 -> SM MB (own / w-mc / x-mc)\n");
    for (int T : {32, 64, 128, 256}) {
      for (bool cold : {false, true}) {
        double best[4] = {1e9, 1e9, 1e9, 1e9};
        for (int rep = 0; rep < 3; ++rep) {
          for (int mode = 0; mode < 4; ++mode) {
            const int cluster = mode == kOwn8 ? 8 : 16, ctas = 8 * (T / kTokensPerCta) * (kHeads / kHeadsPerCta);
            const double us = dsa_dev::time_graph(s, 20, [&](int i) {
              const int region = cold ? i % kRegions : 0;
              if (boxes) {
                launch(box_kernel, kBoxSmem, cluster, ctas, s, wmaps[kHeadsPerCta][region],
                       xmaps[kTokensPerCta][region], T, mode, out);
              } else {
                launch(row_kernel, kRowSmem, cluster, ctas, s, static_cast<const unsigned char*>(w + region * w_region),
                       static_cast<const unsigned char*>(x + region * x_region), T, mode, out);
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
  std::printf(
      "\n== loads alone of other tilings, as the kernel's boxes load them, every CTA its own bytes; us per "
      "launch (graph replay of 20), best of 3 runs, sources cold / warm ==\n%6s %7s %7s %7s %6s %8s %9s %8s %8s\n",
      "T", "tokens", "heads", "groups", "CTAs", "KB/CTA", "MB in all", "cold", "warm");
  struct Tiling {
    int tokens, heads, groups;
  };
  const Tiling tilings[] = {{16, 16, 8}, {16, 32, 8}, {16, 64, 8}, {32, 16, 8}, {32, 32, 8}, {32, 64, 8},
                            {64, 16, 8}, {64, 32, 8}, {16, 16, 4}, {16, 32, 4}, {32, 16, 4}};
  for (int T : {64, 128, 256}) {
    for (const Tiling& t : tilings) {
      const int chunks = kRowBytes / 256 / t.groups, bytes = chunks * (t.heads + t.tokens) * 256;
      const int ctas = t.groups * ((T + t.tokens - 1) / t.tokens) * (kHeads / t.heads);
      const int smem = bytes + 1024;
      DSA_CUDA_CHECK(cudaFuncSetAttribute(tiling_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      double best[2] = {1e9, 1e9};
      for (int rep = 0; rep < 3; ++rep) {
        for (int cold = 1; cold >= 0; --cold) {
          const double us = dsa_dev::time_graph(s, 20, [&](int i) {
            const int region = cold ? i % kRegions : 0;
            launch(tiling_kernel, smem, t.groups, ctas, s, wmaps[t.heads][region], xmaps[t.tokens][region], T, t.tokens,
                   t.heads, t.groups, out);
          });
          if (us < best[1 - cold]) best[1 - cold] = us;
        }
      }
      std::printf("%6d %7d %7d %7d %6d %8.1f %9.1f %8.2f %8.2f\n", T, t.tokens, t.heads, t.groups, ctas, bytes / 1024.0,
                  ctas * static_cast<double>(bytes) / 1e6, best[0], best[1]);
    }
  }
  DSA_CUDA_CHECK(cudaStreamDestroy(s));
  DSA_CUDA_CHECK(cudaFree(w));
  DSA_CUDA_CHECK(cudaFree(x));
  DSA_CUDA_CHECK(cudaFree(out));
  return 0;
}
