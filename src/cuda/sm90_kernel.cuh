// sm_90a kernel of the head gate: a cluster of 8 CTAs splits K into the 8 groups of
// kernel_params.h; each CTA keeps its group's slice of the weight resident in shared memory (or,
// in the T128H64 tile, streams it from L2 beside x), streams the matching columns of x through a
// ring, and the cluster sums the 8 group partials through distributed shared memory in rank order.
// Persistent over token tiles.
// Decode tiles (16/32 tokens, few heads per CTA, every chunk of a group in flight at once) use
// cp.async (or 1-D bulk copies of whole rows) and mma.sync; prefill tiles (64/128 tokens) use TMA
// and wgmma. All keep the same summation, so results are bitwise equal for every T: see NOTES.md
// beside this file.
//
// This header is the kernel and its host-side templates; each tile (Config below) is instantiated
// in a translation unit of its own, generated from sm90_tile.cu.in, so that each lands in its own
// CUDA module. With lazy loading (the default) a process's first call then loads the one small
// module of the tile it needs (84 KB for T16H8b) rather than one module holding all tiles
// (1.29 MB): 0.16-0.22 against 1.0-1.7 ms on the H200 (NOTES.md version 47).
// sm90_logits_head_gate.cpp maps Sm90Tile to the tiles' entry points.
#pragma once

#include <cuda.h>  // CUtensorMap and its enums (header only: the driver entry point is fetched at run time)
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>

#include "common/check.h"
#include "cuda/cuda_check.h"
#include "cuda/mma_sm80.cuh"
#include "cuda/sm90_logits_head_gate.h"

namespace dsa_indexer::cuda {

// Host helpers shared by every tile, defined once in sm90_logits_head_gate.cpp.
// A 2-D tensor map over a bf16 [rows, K] matrix with row stride ld, boxes of 64 columns (128 bytes,
// the swizzle span) x box_rows rows, 128-byte swizzle: the split layout of mma_sm80.cuh.
CUtensorMap make_tensor_map(const std::uint16_t* base, int K, std::int64_t rows, std::int64_t ld, int box_rows);
// The same matrix seen as 3-D (K % 64 == 0): 64 columns x rows x K / 64 blocks of 64 columns. One
// box is box_rows rows of box_blocks consecutive blocks and lands block after block, which is the
// split layout again: a whole K group's slice in one instruction, where the 2-D map takes one per
// 64 columns (~90 cycles of the issuing thread each, NOTES.md version 58).
CUtensorMap make_block_tensor_map(const std::uint16_t* base, int K, std::int64_t rows, std::int64_t ld, int box_rows,
                                  int box_blocks);
// cudaDevAttrMaxSharedMemoryPerBlockOptin of the device, cached.
int device_max_smem(int device);

// Internal linkage: every translation unit that includes this header (one per tile) gets its own
// copy of the kernel and helpers and instantiates only its tile.
namespace {

constexpr int kClusterSize = kNumKGroups;

// Only the sm_90a pass compiles the body: clusters, griddepcontrol and the tile sizes are tuned for
// Hopper; the dispatcher never launches this kernel elsewhere.
#if !defined(__CUDA_ARCH__) || (__CUDA_ARCH__ == 900)
#define DSA_SM90_BODY 1
#endif

#ifdef DSA_SM90_BODY  // the helpers below serve the kernel body only
__device__ __forceinline__ unsigned cluster_ctarank() {
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}
// Relaxed arrive: it orders nothing, so it does not wait for the cp.async traffic in flight (a
// release arrive compiles to a MEMBAR that did, once per tile: 1.3 of 8 stall cycles per
// instruction in ncu). Data moves between CTAs through st.async + mbarrier instead (below).
__device__ __forceinline__ void cluster_arrive_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() {
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_init(std::uint32_t bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
__device__ __forceinline__ void mbar_arrive_expect_tx(std::uint32_t bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
#ifdef DSA_WAIT_WATCHDOG
// Dev mode (-DDSA_WAIT_WATCHDOG in CMAKE_CUDA_FLAGS): an mbarrier wait that lasts 20 s prints who
// waits on what (lane 0 of each waiting warp), and one that lasts 30 s traps, so that a hang, under
// compute-sanitizer for instance, ends with a report instead of a timeout. Addresses are shared::cta
// ones (the CTA's rank in bits 24 and up); subtract the layout's offsets to name the barrier.
__device__ __forceinline__ unsigned long long watchdog_now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  return t;
}
#endif
__device__ __forceinline__ void mbar_wait_parity(std::uint32_t bar, unsigned parity) {
  unsigned done;
#ifdef DSA_WAIT_WATCHDOG
  const unsigned long long t0 = watchdog_now();
  unsigned spins = 0;
  bool reported = false;
#endif
  do {
    asm volatile(
        "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
#ifdef DSA_WAIT_WATCHDOG
    if (!done && (++spins & 255) == 0) {
      const unsigned long long waited = watchdog_now() - t0;
      if (waited > 30000000000ull) __trap();
      if (waited > 20000000000ull && !reported && threadIdx.x % 32 == 0) {
        reported = true;
        printf("DSA_WAIT_WATCHDOG: block %d thread %d waits on mbarrier %#x for parity %u\n",
               static_cast<int>(blockIdx.x), static_cast<int>(threadIdx.x), bar, parity);
      }
    }
#endif
  } while (!done);
}
// Prefill ring: a consumer warp's arrival on a local barrier (the slot it read is free).
__device__ __forceinline__ void mbar_arrive(std::uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Prefill inbox credit: 4 bytes into a peer CTA's shared memory (addresses mapped by the caller),
// counted on the peer's credit mbarrier, as the pushes are (a remote mbarrier.arrive ran as fast:
// NOTES.md version 51). No fence: the inbox reads before it have returned (their values were added
// and stored).
__device__ __forceinline__ void st_async_b32_mapped(std::uint32_t remote, std::uint32_t remote_bar, unsigned v) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];\n" ::"r"(remote), "r"(v),
               "r"(remote_bar)
               : "memory");
}
// Stores a float2 into the shared memory of CTA `rank` (same offset as local_addr) and counts its 8
// bytes on that CTA's mbarrier (same offset as local_bar): the owner learns the data has landed
// without any fence on the sender's side.
__device__ __forceinline__ void st_async_f2(std::uint32_t local_addr, std::uint32_t local_bar, unsigned rank,
                                            float a, float b) {
  std::uint32_t remote, remote_bar;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(local_addr), "r"(rank));
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote_bar) : "r"(local_bar), "r"(rank));
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v2.f32 [%0], {%1, %2}, [%3];\n" ::"r"(remote),
               "f"(a), "f"(b), "r"(remote_bar)
               : "memory");
}

// 16 bytes, with the remote addresses already mapped (mapa) by the caller.
__device__ __forceinline__ void st_async_f4_mapped(std::uint32_t remote, std::uint32_t remote_bar, float a, float b,
                                                   float c, float d) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.f32 [%0], {%1, %2, %3, %4}, [%5];\n" ::"r"(
                   remote),
               "f"(a), "f"(b), "f"(c), "f"(d), "r"(remote_bar)
               : "memory");
}
__device__ __forceinline__ std::uint32_t map_to_rank(std::uint32_t local_addr, unsigned rank) {
  std::uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(local_addr), "r"(rank));
  return remote;
}

// 1-D bulk copy (TMA engine, no tensor map) of `bytes` contiguous bytes into this CTA's shared
// memory, completing on an mbarrier. One instruction moves a whole row of a K group.
__device__ __forceinline__ void bulk_copy_1d(std::uint32_t dst, const void* src, unsigned bytes, std::uint32_t bar) {
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(dst),
               "l"(src), "r"(bytes), "r"(bar)
               : "memory");
}

// A chunk's MMA chain (steps <= 8 k16 steps from zero, as chunk_mma) on tiles stored row by row at a
// pitch of `pitch` bytes (the bulk-copy layout): a_addr / b_addr are the lane's ldmatrix addresses
// at step 0; a step advances both by 32 bytes. pitch / 16 is odd, so the 8 rows one ldmatrix phase
// reads fall in 8 distinct bank groups.
template <int kMT, int kNT>
__device__ __forceinline__ void chunk_mma_pitched(float (&acc)[kMT][kNT][4], std::uint32_t a_addr, std::uint32_t b_addr,
                                                  std::uint32_t pitch, int steps) {
  zero(acc);
#pragma unroll
  for (int st = 0; st < kChunk / kMmaK; ++st) {
    if (steps == kChunk / kMmaK || st < steps) warp_mma_step_at(acc, a_addr + st * 32, b_addr + st * 32, 16 * pitch);
  }
}

// Bulk tensor copy (TMA) of one box into this CTA's shared memory, completing on an mbarrier, with
// an L2 eviction policy (l2_policy): at column `col`, row `row` of a make_tensor_map map, or at row
// `row`, block `block` of a make_block_tensor_map map.
__device__ __forceinline__ void tma_load_2d(std::uint32_t dst, const CUtensorMap* map, int col, int row,
                                            std::uint32_t bar, std::uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(col), "r"(row), "r"(bar), "l"(policy)
      : "memory");
}
__device__ __forceinline__ void tma_load_blocks(std::uint32_t dst, const CUtensorMap* map, int row, int block,
                                                std::uint32_t bar, std::uint64_t policy) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, {%2, %3, %4}], [%5], %6;\n" ::"r"(dst),
      "l"(reinterpret_cast<std::uint64_t>(map)), "r"(0), "r"(row), "r"(block), "r"(bar), "l"(policy)
      : "memory");
}
// x is read once: its lines go first, so that the weight, read by every cluster, stays in L2
// (evict-normal for the weight lost everywhere, NOTES.md version 44).
// Not volatile: a policy is a pure value, so the compiler may compute it once, outside the loop.
enum L2Eviction { kEvictFirst, kEvictLast };
template <L2Eviction kEviction>
__device__ __forceinline__ std::uint64_t l2_policy() {
  std::uint64_t policy;
  if constexpr (kEviction == kEvictFirst) {
    asm("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
  } else {
    asm("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;\n" : "=l"(policy));
  }
  return policy;
}

// wgmma (sm_90a): a warpgroup's 64 x N x 16 product from two shared-memory descriptors, both
// operands K-major in the split 128-byte-swizzled layout (mma_sm80.cuh). Accumulators land in the
// same per-warp fragment layout as mma.sync m16n8, row block 16 * (warp % 4).
// The descriptor's low word holds the start address (addr >> 4, 14 bits) and the leading offset;
// the high word is the same for every operand here, so only the low word is computed (a step's
// descriptor is the chunk's plus its byte offset / 16: shared addresses stay below 256 KB, so the
// address field never carries) and the two are joined inside the asm.
__device__ __forceinline__ std::uint32_t smem_desc_lo(std::uint32_t addr) {
  return ((addr & 0x3FFFF) >> 4) | (1u << 16);  // leading offset: unused (swizzled K-major)
}
constexpr std::uint32_t kSmemDescHi = (1024 >> 4)    // 8 rows x 128 B between row groups
                                      | (1u << 30);  // bit 62: 128-byte swizzle
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>  // waits until at most kPending committed groups are still running
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[8][4], std::uint32_t a_lo, std::uint32_t b_lo, bool accumulate) {
  asm volatile(
      "{\n .reg .pred p;\n .reg .b64 da, db;\n setp.ne.b32 p, %35, 0;\n"
      " mov.b64 da, {%32, %34};\n mov.b64 db, {%33, %34};\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, da, db, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
      : "r"(a_lo), "r"(b_lo), "n"(kSmemDescHi), "r"(static_cast<int>(accumulate)));
}
__device__ __forceinline__ void wgmma_m64n32k16(float (&d)[4][4], std::uint32_t a_lo, std::uint32_t b_lo, bool accumulate) {
  asm volatile(
      "{\n .reg .pred p;\n .reg .b64 da, db;\n setp.ne.b32 p, %19, 0;\n"
      " mov.b64 da, {%16, %18};\n mov.b64 db, {%17, %18};\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, da, db, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3])
      : "r"(a_lo), "r"(b_lo), "n"(kSmemDescHi), "r"(static_cast<int>(accumulate)));
}

__device__ __forceinline__ void wgmma_m64n16k16(float (&d)[2][4], std::uint32_t a_lo, std::uint32_t b_lo, bool accumulate) {
  asm volatile(
      "{\n .reg .pred p;\n .reg .b64 da, db;\n setp.ne.b32 p, %11, 0;\n"
      " mov.b64 da, {%8, %10};\n mov.b64 db, {%9, %10};\n"
      "wgmma.mma_async.sync.aligned.m64n16k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7}, da, db, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), "+f"(d[1][3])
      : "r"(a_lo), "r"(b_lo), "n"(kSmemDescHi), "r"(static_cast<int>(accumulate)));
}
template <int kN>
__device__ __forceinline__ void wgmma_m64k16(float (&d)[kN / 8][4], std::uint32_t a_lo, std::uint32_t b_lo,
                                             bool accumulate) {
  if constexpr (kN == 64) {
    wgmma_m64n64k16(d, a_lo, b_lo, accumulate);
  } else if constexpr (kN == 32) {
    wgmma_m64n32k16(d, a_lo, b_lo, accumulate);
  } else {
    static_assert(kN == 16, "instantiated for 16, 32 and 64 heads");
    wgmma_m64n16k16(d, a_lo, b_lo, accumulate);
  }
}

// One 128-wide chunk's wgmma chain into d: 8 k16 steps on K-major split-layout operands (A of
// kRowsA rows from a_desc, B of kRowsB rows from b_desc: each 64-column half is rows x 128 bytes),
// step 0 from zero (scale-d = 0) as the mma.sync paths start from a zero accumulator; then one
// commit group. Every chunk is 8 steps (G % 128 == 0: the prefill tiles' fits() admit no other
// shape). The chain is fully unrolled: a guarded step loop made ptxas serialise it (warning C7519,
// NOTES.md version 12).
template <int kN, int kRowsA, int kRowsB>
__device__ __forceinline__ void wgmma_chunk_chain(float (&d)[kN / 8][4], std::uint32_t a_desc, std::uint32_t b_desc) {
  wgmma_fence();
#pragma unroll
  for (int st = 0; st < kChunk / kMmaK; ++st) {
    constexpr int kKOff = kMmaK * 2;  // bytes of one k16 step inside a 128-byte half row
    wgmma_m64k16<kN>(d, a_desc + (((st >> 2) * kRowsA * kHalfRowBytes + (st & 3) * kKOff) >> 4),
                     b_desc + (((st >> 2) * kRowsB * kHalfRowBytes + (st & 3) * kKOff) >> 4), st > 0);
  }
  wgmma_commit();
}

#endif  // DSA_SM90_BODY

#ifdef DSA_TIMELINE
// Dev builds only (dev/cuda/timeline): CTA b of a launch records events into
// timeline[b * 2 * kTlEvents ...], each as (globaltimer ns, clock64) of the thread that reached it.
// Events: 0 entry, 1 past griddepcontrol.wait, 2 weight slice landed, 3 exit, 4 (SM id, waves |
// tiles << 32), 5 last finish begins, 8 + 2 s wave s's load issued, 9 + 2 s wave s's data seen by
// the consumer (waves 0-119; a decode CTA with fewer than 100 waves, whose events then stay below
// 240, records its last wave step by step in 240-242: thread 0's chunk chain done, every partial
// stored, thread 0's join done), and the end of the last tile, step by step (kTlEnd + 0..3; + 0
// in prefill tiles only): its last wave's MMAs complete, end_tile's cluster barrier passed, its
// sums pushed, the owner's inbox full.
constexpr int kTlEvents = 256;
constexpr int kTlEnd = 248;
__device__ __forceinline__ void tl_record(unsigned long long* tl, int e) {
  if (tl == nullptr || e >= kTlEvents) return;
  unsigned long long g, c;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(g));
  asm volatile("mov.u64 %0, %%clock64;\n" : "=l"(c));
  tl[2 * e] = g;
  tl[2 * e + 1] = c;
}
#define DSA_TL(cond, e) \
  do {                  \
    if (cond) tl_record(tl_cta, (e)); \
  } while (0)
// With DSA_TIMELINE_WAVES as well (a dev build's CMAKE_CUDA_FLAGS), prefill tiles record instead of
// events 8-247 the steps of loop iteration s < 40 as event 8 + 6 s + k: k = 0 wave s - 1's wgmmas
// complete, 1 summed into the group sums, 2 wave s's data seen, 3 wave s's wgmmas issued, 4 and 5
// the retire of wave s - 1 begins and ends (dev/cuda/timeline_waves.py reads them). Each record
// costs ~70 cycles.
#ifdef DSA_TIMELINE_WAVES
constexpr bool kTlWaves = true;
#define DSA_TLW(s, k) DSA_TL(tid == 0 && (s) < 40, 8 + 6 * (s) + (k))
#else
constexpr bool kTlWaves = false;
#define DSA_TLW(s, k) do {} while (0)
#endif
#else
#define DSA_TLW(s, k) do {} while (0)
#define DSA_TL(cond, e) \
  do {                  \
  } while (0)
#endif

// Row pitch of the bulk-copy decode tiles: a group's row (G bf16, G % 16 == 0) plus 16 bytes, so
// pitch / 16 = G / 8 + 1 is odd and 8 consecutive rows start in 8 distinct 16-byte bank groups.
__host__ __device__ constexpr int bulk_pitch(int G) { return 2 * G + 16; }

// Shared memory: [weight slice: nchunks x kBlockH rows (none if streamed)][x ring: kSlots x
// (kWarpsK chunks x kBlockT rows (+ the weight chunk, kBlockH rows, if streamed))][chunk partials
// (decode mode): kWarpsK x kBlockT x kRedPitch][inbox: kInboxBufs buffers x 8 source ranks x
// kRowsPerRank x kBlockH][mbarriers]. Tile rows are 128 bf16, swizzled (mma_sm80.cuh); bulk-copy
// tiles instead keep [kBlockH weight rows][kSlots x kBlockT x rows] of the whole group at bulk_pitch.
//
// Two modes, one arithmetic:
// - prefill (kWarpsK == 1, TMA + wgmma): a warpgroup owns 64 tokens x its heads and walks the
//   group's chunks in order (one chunk per ring slot), keeping the group sum q in registers.
// - decode (kWarpsK > 1, cp.async + mma.sync): the chunks of a wave are spread over kWarpsK warp
//   sets that run side by side; their partials meet in shared memory and join q in chunk order.
// At the end of a tile every CTA pushes its group sums, row block by row block, into the inbox of the
// CTA that owns the rows, and each owner adds the 8 in rank order. (The stores do stall the pushing
// warps: local stores in their place took ~1 us off a call of T128H64ws at T = 2048-8192, but the
// same stores spread over the next tile's waves, or staged and sent by bulk copies, cost more;
// NOTES.md version 66.) The
// inbox is double-buffered and the owner finishes tile i only at the end of tile i + 1: waiting for
// the slowest of the 8 CTAs right after the push cost 18% of the prefill kernel's time (ncu source
// counters, NOTES.md version 12); one tile later the sums have long arrived. The T128H64 tile has one
// buffer (its 32 KB make the fourth ring slot) and finishes tile i half way through tile i + 1.
template <class Cfg>
__global__ void __launch_bounds__(Cfg::kBlockThreads, Cfg::kMinBlocks) sm90_logits_head_gate_kernel(
    const KernelParams p, const __grid_constant__ CUtensorMap tmap_x, const __grid_constant__ CUtensorMap tmap_w) {
#ifdef DSA_SM90_BODY
  constexpr int kBlockT = Cfg::kBlockT, kBlockH = Cfg::kBlockH, kWarpsK = Cfg::kWarpsK;
  // kThreads: the warps that compute; prefill tiles add one producer warp (thread kThreads issues
  // every TMA load of the ring) after them.
  constexpr int kSlots = Cfg::kSlots, kThreads = Cfg::kThreads, kBlockThreads = Cfg::kBlockThreads;
  constexpr int kConsumerWarps = kThreads / 32;
  constexpr bool kPrefill = Cfg::kPrefill, kStreamW = Cfg::kStreamW, kBulk = Cfg::kBulk, kTmaW = Cfg::kTmaW;
  constexpr bool kTmaX = Cfg::kTmaX;
  constexpr int kChunksPerWave = kWarpsK;  // chunks of K per ring slot: one per warp set
  static_assert(kPrefill == (kWarpsK == 1), "prefill mode (one chunk per wave) is the wgmma mode");
  static_assert(kPrefill || !kStreamW, "only prefill tiles stream the weight");
  static_assert(!(kPrefill && kBulk), "bulk row copies: decode tiles only");
  static_assert(!kTmaW || (!kPrefill && !kBulk), "a weight slice by TMA: cp.async decode tiles only");
  static_assert(!kTmaX || (!kPrefill && !kBulk && !kTmaW), "chunks by TMA: a variant of the cp.async decode tiles");
  // A ring slot: the wave's x chunks, then (weight streamed) the weight chunk they multiply.
  constexpr int kXSlotBytes = kChunksPerWave * kBlockT * kRowBytes;
  constexpr int kSlotBytes = kXSlotBytes + (kStreamW ? kBlockH * kRowBytes : 0);
  constexpr int kInboxBufs = Cfg::kInboxBufs;
  static_assert(kInboxBufs == 2 || (kInboxBufs == 1 && kPrefill), "one inbox buffer: prefill tiles only");
  constexpr int kWarpRows = kBlockT / Cfg::kWarpsT, kWarpHeads = kBlockH / Cfg::kWarpsH;
  constexpr int kMT = kWarpRows / 16, kNT = kWarpHeads / 8;
  constexpr int kRedPitch = kBlockH + 8;  // floats; +8 keeps the float2 stores conflict-free
  constexpr int kVecs = kRowBytes / 16;
  constexpr int kRowsPerPass = kThreads / kVecs;  // tile rows one pass of 16-byte copies covers
  constexpr int kRowsPerRank = kBlockT / kClusterSize;
  constexpr int kOwned = kRowsPerRank * kBlockH;  // outputs this CTA finishes per tile
  // The owned outputs are finished kVec heads at a time (one inbox read per source rank): 4 in
  // prefill tiles (fewer instructions), 1 in decode tiles (latency: more threads side by side).
  constexpr int kVec = kWarpsK == 1 ? 4 : 1;
  constexpr int kQuads = kOwned / kVec, kQuadsPerRow = kBlockH / kVec;
  constexpr int kQuadsPerThread = (kQuads + kThreads - 1) / kThreads;
  static_assert(kBlockH % kVec == 0, "whole vectors of heads");
  constexpr int kPairsPerThread = (kBlockT * kBlockH / 2 + kThreads - 1) / kThreads;
  static_assert(kSlots >= 2 || !kPrefill, "the prefill ring needs two slots");
  static_assert(kThreads % kVecs == 0, "copy passes cover whole rows");
  static_assert(kBlockT % kClusterSize == 0, "rows are shared out to the 8 CTAs");

  extern __shared__ __align__(1024) unsigned char smem[];
  const int nchunks = (p.G + kChunk - 1) / kChunk;
  unsigned char* w_smem = smem;
  // Bulk-copy decode tiles store each row of the group whole, at a pitch of 2 G + 16 bytes (bulk_pitch).
  const int pitch = bulk_pitch(p.G);
  const int slot_bytes = kBulk ? kBlockT * pitch : kSlotBytes;
  unsigned char* x_smem = w_smem + (kStreamW ? 0 : kBulk ? kBlockH * pitch : nchunks * kBlockH * kRowBytes);
  float* part = reinterpret_cast<float*>(x_smem + kSlots * slot_bytes);
  float* inbox = part + (kWarpsK > 1 ? kWarpsK * kBlockT * kRedPitch : 0);  // [kInboxBufs][kBlockT * kBlockH]
  const std::uint32_t inbox_full = smem_addr(inbox + kInboxBufs * kBlockT * kBlockH);  // mbarriers [kInboxBufs]
  // A resident weight slice of a prefill tile lands chunk by chunk, one mbarrier each, so that wave
  // s of the first tile waits for its own chunk only (version 46); decode tiles use one.
  // Chunk-by-TMA decode tiles give every chunk of the slice and of each ring slot its own mbarrier,
  // so that warp c waits for chunk c's bytes only.
  constexpr bool kWChunkBars = kPrefill && !kStreamW;
  constexpr int kSlotBars = kTmaX ? kWarpsK : 1;  // mbarriers per ring slot
  const int n_wbars = kWChunkBars ? nchunks : kTmaX ? kWarpsK : 1;
  const std::uint32_t slot_full = inbox_full + 8 * kInboxBufs;  // TMA: [kSlots][kSlotBars] x landed
  const std::uint32_t w_full = slot_full + 8 * kSlots * kSlotBars;  // TMA: weight landed [n_wbars]
  // Prefill: a ring slot's consumer warps have retired it [kSlots]; the 8 owners have read an inbox
  // buffer of this CTA's pushes [kInboxBufs].
  const std::uint32_t slot_empty = w_full + 8 * n_wbars;
  const std::uint32_t inbox_free = slot_empty + 8 * kSlots;
  // Prefill: where the credits land, one word per (buffer, owner, owner's consumer warp); never read.
  const std::uint32_t credit_words = inbox_free + 8 * kInboxBufs;
  constexpr unsigned kCreditBytes = 4 * kClusterSize * kConsumerWarps;  // one phase of a credit barrier
  // Inbox rows are kBlockH floats; the column is xor-ed with the row so that the float2 stores of a
  // warp (8 rows x 4 column pairs) spread over the banks. Multiples of 8 keep pairs together.
  constexpr int kInboxSwizzle = (kBlockH / 8 - 1) < 7 ? (kBlockH / 8 - 1) : 7;
  const auto inbox_at = [](int buf, int row, int col) {
    return buf * kBlockT * kBlockH + row * kBlockH + (col ^ ((row & kInboxSwizzle) << 3));
  };
  constexpr unsigned kInboxBytes = kClusterSize * kRowsPerRank * kBlockH * sizeof(float);

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
#ifdef DSA_TIMELINE
  unsigned long long* const tl_cta =
      p.timeline ? p.timeline + (blockIdx.y * gridDim.x + blockIdx.x) * 2 * kTlEvents : nullptr;
#endif
  DSA_TL(tid == 0, 0);
  // The tensor maps live in the kernel's parameters: the first TMA load through each would fetch
  // its 128 bytes into the TMA unit's descriptor cache on the critical path, right after
  // griddepcontrol.wait. Fetched here instead, while the previous kernel still runs (a parameter
  // is never the previous kernel's output).
  if constexpr (Cfg::kPrefill) {
    if (threadIdx.x == Cfg::kThreads) {
      asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(&tmap_x)) : "memory");
      asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(&tmap_w)) : "memory");
    }
  } else if constexpr (Cfg::kTmaW) {
    if (threadIdx.x == 0)
      asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(&tmap_w)) : "memory");
  } else if constexpr (Cfg::kTmaX) {
    if (threadIdx.x == 0) {
      asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(&tmap_x)) : "memory");
      asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(&tmap_w)) : "memory");
    }
  }
  const unsigned rank = cluster_ctarank();
  const int worker = blockIdx.x / kClusterSize;
  const int num_workers = gridDim.x / kClusterSize;
  const int h0 = blockIdx.y * kBlockH;
  const std::int64_t k_base = static_cast<std::int64_t>(rank) * p.G;  // this CTA's group
  const std::int64_t num_tiles = (p.T + kBlockT - 1) / kBlockT;
  const int my_tiles = static_cast<int>((num_tiles - worker + num_workers - 1) / num_workers);
  const int waves_per_tile = (nchunks + kChunksPerWave - 1) / kChunksPerWave;
  const int num_waves = my_tiles * waves_per_tile;
  const int warp_chunk = warp / (Cfg::kWarpsT * Cfg::kWarpsH);  // decode mode: chunk of the wave
  const int warp_mn = warp % (Cfg::kWarpsT * Cfg::kWarpsH);
  // wgmma mode: warpgroup wg = warp / 4 owns 64 tokens x kWarpHeads heads, its warps 16 rows each;
  // otherwise warps tile tokens x heads directly.
  const int wg = warp / 4;
  const int warp_row0 = kPrefill ? (wg / Cfg::kWarpsH) * 64 + (warp % 4) * 16 : (warp_mn / Cfg::kWarpsH) * kWarpRows;
  const int warp_head0 = kPrefill ? (wg % Cfg::kWarpsH) * kWarpHeads : (warp_mn % Cfg::kWarpsH) * kWarpHeads;
  // Copies: thread tid always moves vector (tid % 16) of rows tid / 16 + i * kRowsPerPass, so its
  // swizzled column is fixed and its addresses advance by constant steps.
  const int copy_vec = tid % kVecs, copy_row0 = tid / kVecs;
  static_assert(kRowsPerPass % 8 == 0, "a copy pass keeps each thread's swizzle phase");
  const std::uint32_t w_soff = split_offset<kBlockH>(copy_row0, copy_vec);
  const std::uint32_t x_soff = split_offset<kBlockT>(copy_row0, copy_vec);
  const auto tile_t0 = [&](int tile_i) {
    return (worker + static_cast<std::int64_t>(tile_i) * num_workers) * kBlockT;
  };

  // The inbox's mbarrier: one arrival (the owner's expect_tx) plus the pushed bytes per tile. Its
  // init must be visible cluster-wide before the first push: the matching wait precedes the first
  // push, a whole main loop later.
  if (tid == 0) {
    for (int b = 0; b < kInboxBufs; ++b) mbar_init(inbox_full + 8 * b, 1);
    if constexpr (kPrefill || kBulk || kTmaW || kTmaX) {
      for (int c = 0; c < n_wbars; ++c) mbar_init(w_full + 8 * c, 1);
      for (int i = 0; i < kSlots * kSlotBars; ++i) mbar_init(slot_full + 8 * i, 1);
    }
    if constexpr (kPrefill) {
      for (int i = 0; i < kSlots; ++i) mbar_init(slot_empty + 8 * i, kConsumerWarps);
      // One arrival (this CTA arming the phase) plus the credits' bytes; phase 0 is armed here,
      // each next one right after its predecessor is waited for (end_tile).
      for (int b = 0; b < kInboxBufs; ++b) {
        mbar_init(inbox_free + 8 * b, 1);
        mbar_arrive_expect_tx(inbox_free + 8 * b, kCreditBytes);
      }
    }
  }
  // The ring's barriers are waited on before the first cluster wait, and a weight slice by TMA
  // completes on one.
  if constexpr (kPrefill || kBulk || kTmaW || kTmaX) __syncthreads();
  cluster_arrive_relaxed();

  // The weight slice: heads [h0, h0 + kBlockH) x this group's columns, loaded once.
  constexpr int kWPasses = (kBlockH + kRowsPerPass - 1) / kRowsPerPass;
  constexpr int kXPasses = (kBlockT + kRowsPerPass - 1) / kRowsPerPass;
  // Bulk copies: rows of the group, row bytes (the group's width) each.
  const unsigned group_bytes = static_cast<unsigned>(min(static_cast<std::int64_t>(p.G), p.K - k_base)) * 2;
  // Prefill tiles: one chunk of the slice by TMA (thread 0), on its own mbarrier.
  const auto load_weight_chunk = [&](int chunk) {
    if constexpr (kWChunkBars) {
      const std::uint32_t bar = w_full + 8 * chunk;
      mbar_arrive_expect_tx(bar, kBlockH * kRowBytes);
      for (int half = 0; half < 2; ++half)
        tma_load_2d(smem_addr(w_smem) + chunk * kBlockH * kRowBytes + half * kBlockH * kHalfRowBytes, &tmap_w,
                    static_cast<int>(k_base) + chunk * kChunk + half * 64, h0, bar, l2_policy<kEvictLast>());
    }
  };
  const auto load_weight_slice = [&] {
    if constexpr (kStreamW) {
      // Each wave brings its own weight chunk (load_wave).
    } else if constexpr (kBulk) {
      // Warp 0 issues one bulk copy per weight row (warp 1 does the x rows, in load_wave).
      if (warp == 0) {
        const int w_rows = min(kBlockH, p.H - h0);
        if (lane == 0) mbar_arrive_expect_tx(w_full, w_rows * group_bytes);
        __syncwarp();
        for (int i = lane; i < w_rows; i += 32)
          bulk_copy_1d(smem_addr(w_smem) + i * pitch, p.w + (h0 + i) * p.ldw + k_base, group_bytes, w_full);
      }
    } else if constexpr (kPrefill) {
      if (tid == 0) {
        for (int chunk = 0; chunk < nchunks; ++chunk) load_weight_chunk(chunk);
      }
    } else if constexpr (kTmaW) {
      // One instruction of thread 0: the whole slice is one box of the group's G / 64 blocks
      // (fits(): G % 64 == 0), landing in the split layout; rows past H arrive as zeros and feed
      // only outputs never stored. Where G % 128 == 64 the box stops half a chunk short of the
      // slice's room, and that half feeds no MMA step (chunk_steps()). x's cp.async copies then
      // need not queue behind the slice's ~3600 (version 57), nor thread 0's behind 14 boxes of one
      // 2-D block each (~90 cycles apiece, version 58).
      if (tid == 0) {
        mbar_arrive_expect_tx(w_full, (p.G / 64) * kBlockH * kHalfRowBytes);
        tma_load_blocks(smem_addr(w_smem), &tmap_w, h0, static_cast<int>(k_base / 64), w_full, l2_policy<kEvictLast>());
      }
    } else if constexpr (kTmaX) {
      // Chunk c of the slice: one box of its two 64-column blocks, issued by the first lane of the
      // warp that multiplies it, so that the chunks' instructions go out side by side and chunk c
      // completes on its own mbarrier. Where G % 128 == 64 the last box reaches into the next
      // group's first block (or past K: zeros), which no MMA step reads (chunk_steps()).
      if (lane == 0 && warp_mn == 0 && warp_chunk < nchunks) {
        const std::uint32_t bar = w_full + 8 * warp_chunk;
        mbar_arrive_expect_tx(bar, kBlockH * kRowBytes);
        tma_load_blocks(smem_addr(w_smem) + warp_chunk * kBlockH * kRowBytes, &tmap_w, h0,
                        static_cast<int>(k_base / 64) + 2 * warp_chunk, bar, l2_policy<kEvictLast>());
      }
    } else {
      const std::uint32_t base = smem_addr(w_smem) + w_soff;
      const std::uint16_t* src = p.w + (h0 + copy_row0) * p.ldw + k_base + copy_vec * 8;
      const int rows_valid = min(kBlockH, p.H - h0);
      for (int chunk = 0; chunk < nchunks; ++chunk) {
        if (chunk * kChunk + copy_vec * 8 < p.G) {
#pragma unroll
          for (int i = 0; i < kWPasses; ++i) {
            if (copy_row0 + i * kRowsPerPass < rows_valid) {
              cp_async_16(base + chunk * kBlockH * kRowBytes + i * kRowsPerPass * kHalfRowBytes,
                          src + i * kRowsPerPass * p.ldw + chunk * kChunk, 16);
            }
          }
        }
      }
    }
  };
  // Programmatic dependent launch: wait for the previous kernel before the first global read (x,
  // weight or q_scale may be its output); the next kernel is released only after that wait (below).
  // While the previous kernel finishes, pull this CTA's weight slice and its first tile of x from
  // HBM into L2. A prefetch returns nothing to the SM, and L2 is where every SM's writes land, so a
  // previous kernel that writes these bytes is still seen by the loads after the wait.
  // A static weight (no earlier work writes it) is copied into shared memory right away instead:
  // the copy then overlaps the previous kernel, not just the trip from HBM to L2 (benchmark: 0.2-1
  // us less at T <= 1024, NOTES.md version 45). Streamed-weight tiles load it with each wave.
  const bool weight_first = p.static_weight && !kStreamW;
  if (weight_first) load_weight_slice();
  {
    const int w_rows = weight_first ? 0 : min(kBlockH, p.H - h0);
    const int x_rows = static_cast<int>(min(static_cast<std::int64_t>(kBlockT), p.T - tile_t0(0)));
    const unsigned row_bytes = static_cast<unsigned>(min(static_cast<std::int64_t>(p.G), p.K - k_base)) * 2;
    // Of x, a prefill CTA with more work than two 64-token tiles prefetches the first chunk only:
    // every CTA of a large grid prefetching its whole first tile (13-27 MB in all) queues in HBM ahead
    // of the previous kernel's last, critical loads (dev/cuda/timeline: 2.5 us per wave in its last
    // round). Sweep with the weight from HBM (NOTES.md version 46): DeepSeek T128H64ws T = 3072
    // 17.9 against 19.9 us, 16384 65.0 against 67.2; T64H64tma T = 4096 22.2 against 23.0; GLM
    // T128H32tma T = 1024 8.0 against 9.1. A small grid keeps the whole tile (T64H64tma T = 1024
    // 10.1 against 10.9).
    const bool x_first_chunk_only = kPrefill && (kBlockT > 64 || my_tiles > 2);
    const unsigned x_row_bytes = x_first_chunk_only ? min(row_bytes, static_cast<unsigned>(kRowBytes)) : row_bytes;
    for (int i = tid; i < w_rows + x_rows; i += kBlockThreads) {
      const std::uint16_t* row = i < w_rows ? p.w + (h0 + i) * p.ldw : p.x + (tile_t0(0) + i - w_rows) * p.ldx;
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(row + k_base),
                   "r"(i < w_rows ? row_bytes : x_row_bytes)
                   : "memory");
    }
  }
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  DSA_TL(tid == 0, 1);
  // Release the next kernel now, not at the top: released there, each kernel of a back-to-back
  // sequence released the next before its own wait, so several grids could sit resident at once,
  // prefetching and waiting, beside the one running. Here at most one grid waits behind the one that
  // computes, and its prologue still overlaps this kernel's main loop. DeepSeek sweep: T16H8 at
  // T = 1 2.47 -> 2.17 us, T16H16 at T = 32 3.05 -> 2.46; prefill unchanged (NOTES.md version 28).
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  // A prefill tile's weight chunks are issued between the first waves of x instead (below), so that
  // wave 0 waits for 8-16 KB of weight, not the whole slice (112 KB at DeepSeek's H = 64): a tile's
  // first data landed 1.3-4 us after griddepcontrol.wait (dev/cuda/timeline, T64H64tma), and all
  // of it was the slice (sweep, version 46: T64H64tma T = 2048 14.6 against 15.2 us).
  if (!weight_first && !kWChunkBars) load_weight_slice();
  // The thread that issues the ring's loads: the producer warp's first lane (prefill), warp 1
  // (bulk-copy decode tiles), or thread 0 (cp.async tiles: every thread copies, thread 0 records).
  constexpr int kIssuer = kPrefill ? kThreads : kBulk ? 32 : 0;
  const bool weight_by_wave = kWChunkBars && !weight_first && tid == kIssuer;

  // Rows of x past T are never loaded: MMA rows are independent and those outputs are not stored.
  const std::int64_t x_pass_stride = kRowsPerPass * p.ldx;
  // The copy loop below reads these as locals: read through p (captured by reference), each one
  // is loaded again after every cp.async, whose asm clobbers memory, and the addresses are rebuilt
  // with 64-bit multiplies per chunk (~40 instructions a chunk where 5 do; NOTES.md version 32).
  const std::int64_t ldx = p.ldx, T = p.T;
  const int G = p.G;
  const std::uint16_t* const x_copy = p.x + copy_row0 * ldx + k_base + copy_vec * 8;
  // Position in the flat sequence of waves (tile, wave of the tile, ring slot), advanced by
  // increments: run-time divisions in the loop cost more issue slots than the MMAs.
  struct Cursor {
    int tile = 0, wave = 0, slot = 0;
    unsigned phase = 0;  // parity of the slot's mbarrier for this wave: (wave index / kSlots) & 1
    __device__ void advance(int waves_per_tile) {
      if (++wave == waves_per_tile) wave = 0, ++tile;
      if (++slot == kSlots) slot = 0, phase ^= 1;
    }
  };
  const auto load_wave = [&](const Cursor& at) {
    const int chunk0 = at.wave * kChunksPerWave;
    const std::int64_t t0 = tile_t0(at.tile);
    DSA_TL(!kTlWaves && tid == kIssuer && 8 + 2 * (at.tile * waves_per_tile + at.wave) < kTlEnd,
           8 + 2 * (at.tile * waves_per_tile + at.wave));
    if constexpr (kPrefill) {
      // The producer thread, whole boxes; rows past T arrive as zeros (out of the tensor map's bounds).
      // Two 2-D boxes per 128-column chunk: one 3-D box of both blocks (as the decode tile's weight
      // slice takes) issued half the instructions but lost 0.1-0.25 us at T64H64tma (version 58).
      const int nvalid = min(kChunksPerWave, nchunks - chunk0);
      const std::uint32_t bar = slot_full + 8 * at.slot;
      const std::uint32_t dst = smem_addr(x_smem) + at.slot * slot_bytes;
      mbar_arrive_expect_tx(bar, nvalid * kBlockT * kRowBytes + (kStreamW ? kBlockH * kRowBytes : 0));
      for (int c = 0; c < nvalid; ++c)
        for (int half = 0; half < 2; ++half)
          tma_load_2d(dst + c * kBlockT * kRowBytes + half * kBlockT * kHalfRowBytes, &tmap_x,
                      static_cast<int>(k_base) + (chunk0 + c) * kChunk + half * 64, static_cast<int>(t0), bar,
                      l2_policy<kEvictFirst>());
      if constexpr (kStreamW) {
        static_assert(kChunksPerWave == 1, "one weight chunk per wave");
        for (int half = 0; half < 2; ++half)
          tma_load_2d(dst + kXSlotBytes + half * kBlockH * kHalfRowBytes, &tmap_w,
                      static_cast<int>(k_base) + chunk0 * kChunk + half * 64, h0, bar, l2_policy<kEvictLast>());
      }
      return;
    }
    if constexpr (kTmaX) {
      // As the weight's chunks (load_weight_slice): chunk c of the wave by warp c's first lane, one
      // box, its own mbarrier; rows past T arrive as zeros.
      if (lane == 0 && warp_mn == 0 && chunk0 + warp_chunk < nchunks) {
        const std::uint32_t bar = slot_full + 8 * (at.slot * kSlotBars + warp_chunk);
        mbar_arrive_expect_tx(bar, kBlockT * kRowBytes);
        tma_load_blocks(smem_addr(x_smem) + at.slot * slot_bytes + warp_chunk * kBlockT * kRowBytes, &tmap_x,
                        static_cast<int>(t0), static_cast<int>(k_base / 64) + 2 * (chunk0 + warp_chunk), bar,
                        l2_policy<kEvictFirst>());
      }
      return;
    }
    const int rows_valid = static_cast<int>(min(static_cast<std::int64_t>(kBlockT), T - t0));
    if constexpr (kBulk) {
      static_assert(kThreads >= 64, "warp 1 loads x");
      if (warp == 1) {
        const std::uint32_t bar = slot_full + 8 * at.slot;
        if (lane == 0) mbar_arrive_expect_tx(bar, rows_valid * group_bytes);
        __syncwarp();
        for (int i = lane; i < rows_valid; i += 32)
          bulk_copy_1d(smem_addr(x_smem) + at.slot * slot_bytes + i * pitch, p.x + (t0 + i) * ldx + k_base,
                       group_bytes, bar);
      }
      return;
    }
    const std::uint32_t base = smem_addr(x_smem) + at.slot * slot_bytes + x_soff;
    const std::uint16_t* src = x_copy + t0 * ldx + chunk0 * kChunk;
    const int col0 = chunk0 * kChunk + copy_vec * 8;  // chunks past the group fail col0 + c * kChunk < G
#pragma unroll
    for (int c = 0; c < kChunksPerWave; ++c) {
      if (col0 + c * kChunk < G) {
#pragma unroll
        for (int i = 0; i < kXPasses; ++i) {
          if (copy_row0 + i * kRowsPerPass < rows_valid) {
            cp_async_16(base + c * kBlockT * kRowBytes + i * kRowsPerPass * kHalfRowBytes,
                        src + i * x_pass_stride + c * kChunk, 16);
          }
        }
      }
    }
  };
  Cursor ahead;  // the next wave to load (decode tiles; prefill tiles' producer keeps its own)
  // Bulk and chunk-by-TMA tiles with one slot load their first wave here too: the slot is free, and
  // the copies go out before the setup below (T16H32s1tx: x issued 459 cycles after the wait when
  // its first wave was loaded in the main loop, version 59's timeline).
  constexpr bool kEarlyFirstWave = kBulk || kTmaX;
  constexpr int kPrologueWaves = kPrefill ? 0 : kEarlyFirstWave ? (kSlots > 1 ? kSlots - 1 : 1) : kSlots - 1;
#pragma unroll 1
  for (int s = 0; s < kPrologueWaves; ++s) {
    if (s < num_waves) load_wave(ahead);
    if constexpr (!kBulk && !kTmaX) cp_async_commit();  // one group per slot, empty or not: uniform wait counts
    ahead.advance(waves_per_tile);
  }

  const FragOffsets<kMT, kNT, kBlockT, kBlockH> frag(warp_row0, warp_head0, lane);
  // Bulk-copy layout: the lane's ldmatrix addresses (as in load_a_frag / load_b_frag_x*) at step 0 of
  // a chunk, relative to the tile.
  const std::uint32_t bulk_a_off = (warp_row0 + (lane & 7) + ((lane >> 3) & 1) * 8) * pitch + (lane >> 4) * 16;
  const std::uint32_t bulk_b_off =
      (warp_head0 + (lane & 7) + (kNT == 1 ? 0 : (lane >> 4) * 8)) * pitch + ((lane >> 3) & 1) * 16;
  const auto chunk_steps = [&](int chunk) { return min(kChunk, p.G - chunk * kChunk) / kMmaK; };
  float q[kMT][kNT][4];                          // prefill mode: this warp's group sums
  float2 qd[kWarpsK > 1 ? kPairsPerThread : 1];  // decode mode: this thread's group sums
  float qs[kQuadsPerThread][kVec], qs_prev[kQuadsPerThread][kVec];  // q_scale: current / previous tile
  // Finishes tile j, whose group sums are in inbox buffer j % kInboxBufs (q_scale in qs_prev): waits
  // for the 8 CTAs' sums of my rows, adds them in rank order, scales and stores.
  const auto finish = [&](int j) {
    mbar_wait_parity(inbox_full + 8 * (j % kInboxBufs), (j / kInboxBufs) & 1);
    DSA_TL(tid == 0 && j == my_tiles - 1, kTlEnd + 3);
    const std::int64_t t_own = tile_t0(j) + static_cast<int>(rank) * kRowsPerRank;
#pragma unroll
    for (int i = 0; i < kQuadsPerThread; ++i) {
      const int e = tid + i * kThreads;
      if (kQuads % kThreads != 0 && e >= kQuads) break;
      const int row = e / kQuadsPerRow, col = kVec * (e % kQuadsPerRow);
      float sums[kVec] = {};
#pragma unroll
      for (int r = 0; r < kClusterSize; ++r) {
        const float* src = inbox + inbox_at(j % kInboxBufs, r * kRowsPerRank + row, col);
        if constexpr (kVec == 4) {
          const float4 v = *reinterpret_cast<const float4*>(src);
          sums[0] = __fadd_rn(sums[0], v.x);
          sums[1] = __fadd_rn(sums[1], v.y);
          sums[2] = __fadd_rn(sums[2], v.z);
          sums[3] = __fadd_rn(sums[3], v.w);
        } else {
          sums[0] = __fadd_rn(sums[0], *src);
        }
      }
      const std::int64_t t = t_own + row;
      if (t >= p.T) continue;
#pragma unroll
      for (int c = 0; c < kVec; ++c) {
        const int h = h0 + col + c;
        if (h < p.H) {
          p.out[t * p.out_t + static_cast<std::int64_t>(h) * p.out_h] =
              scale_output(sums[c], p.n_heads_inv_sqrt, qs_prev[i][c], p.softmax_scale);
        }
      }
    }
  };
  // Start of tile tile_i: clear the group sums and fetch the q_scale values this CTA will need when
  // it finishes the tile, now, so their latency hides behind the main loop.
  const auto begin_tile = [&](int tile_i) {
    if constexpr (kPrefill) zero(q);  // decode tiles clear qd at their first wave instead
    const std::int64_t t0 = tile_t0(tile_i) + static_cast<int>(rank) * kRowsPerRank;
#pragma unroll
    for (int i = 0; i < kQuadsPerThread; ++i) {
      const int e = tid + i * kThreads;
      const std::int64_t t = t0 + e / kQuadsPerRow;
      const int h = h0 + kVec * (e % kQuadsPerRow);
#pragma unroll
      for (int c = 0; c < kVec; ++c) {
        qs[i][c] = (e < kQuads && t < p.T && h + c < p.H) ? __ldg(p.q_scale + t * p.qs_t + (h + c) * p.qs_h) : 0.f;
      }
    }
  };
  // Prefill: this CTA has read inbox buffer j % kInboxBufs (finish(j)), so each peer may push tile
  // j + kInboxBufs into it: lane r of every consumer warp sends CTA r a credit (8 CTAs x
  // kConsumerWarps credits per phase). Credits instead of the decode tiles' cluster barrier: the
  // producer warp, busy loading, never has to take part. No credit is sent for a tile that will not
  // be pushed, so none reaches a CTA that has exited.
  const auto free_inbox = [&](int j) {
    if (j + kInboxBufs >= my_tiles) return;
    __syncwarp();  // every lane of the warp is done reading
    if (lane < kClusterSize) {
      const int b = j % kInboxBufs;
      const std::uint32_t word = credit_words + 4 * ((b * kClusterSize + static_cast<int>(rank)) * kConsumerWarps + warp);
      st_async_b32_mapped(map_to_rank(word, lane), map_to_rank(inbox_free + 8 * b, lane), 1u);
    }
  };
  // Where this thread's group sums go (prefill mode): tile row r belongs to CTA r / kRowsPerRank, at
  // its inbox row rank * kRowsPerRank + r % kRowsPerRank. A thread's rows are warp_row0 + 16 mt +
  // 8 half + lane / 4 and kRowsPerRank >= 8, so the owner depends on (mt, half) only and the
  // swizzle key (row & 7) is lane / 4: addresses are mapped once here, not per store.
  static_assert(kWarpsK > 1 || kRowsPerRank % 8 == 0, "prefill tiles give each owner whole 8-row blocks");
  static_assert(kWarpsK > 1 || kNT % 2 == 0, "prefill pushes pair the 8-column blocks");
  std::uint32_t push_row[kMT][2], push_bar[kMT][2], push_col[(kNT + 1) / 2];
  if constexpr (kWarpsK == 1) {
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int row = warp_row0 + mt * 16 + half * 8 + lane / 4;
        // % 8: the producer warp's rows lie past the tile; it never pushes, but mapa to a rank outside
        // the cluster faults.
        const unsigned owner = (row / kRowsPerRank) % kClusterSize;
        push_row[mt][half] = map_to_rank(
            smem_addr(inbox + (static_cast<int>(rank) * kRowsPerRank + row % kRowsPerRank) * kBlockH), owner);
        push_bar[mt][half] = map_to_rank(inbox_full, owner);
      }
    // 16-byte stores: lanes 2i and 2i + 1 hold the two column pairs of a 4-column quad; for each pair
    // of 8-column blocks (nt, nt + 1) they swap one pair (shfl), and the even lane stores block nt's
    // quad, the odd lane block nt + 1's. Half the remote stores of 8-byte pairs: the push of a
    // 128 x 64 tile took ~2000 cycles of the ~6800 between a CTA's last data and its exit
    // (dev/cuda/timeline, NOTES.md version 48).
#pragma unroll
    for (int nt = 0; nt < kNT; nt += 2) {
      const int block = nt + (lane & 1);
      push_col[nt / 2] = 4 * ((warp_head0 + block * 8 + 4 * ((lane % 4) / 2)) ^ (((lane / 4) & kInboxSwizzle) << 3));
    }
  }
  // End of tile tile_i: push the group sums into inbox buffer tile_i % kInboxBufs of the CTAs that
  // own their rows; with two buffers, then finish the previous tile, whose sums have had a whole
  // tile's time to arrive (one buffer: see mid_tile).
  const auto end_tile = [&](int tile_i) {
    const int buf = tile_i % kInboxBufs;
    // Owners finished reading this buffer (two buffers: tile_i - 2; one: tile_i - 1; tile 0:
    // barrier init, which the cluster barrier armed at the start makes visible cluster-wide).
    if (kPrefill && tile_i >= kInboxBufs) {
      mbar_wait_parity(inbox_free + 8 * buf, ((tile_i / kInboxBufs) - 1) & 1);
      // Arm the buffer's next phase: its credits come from the owners' finish(tile_i), which needs
      // this CTA's pushes below, thread 0's included, so none can land before this.
      if (tid == 0) mbar_arrive_expect_tx(inbox_free + 8 * buf, kCreditBytes);
    } else if (!kPrefill || tile_i == 0) {
      cluster_wait();
    }
    DSA_TL(tid == 0 && tile_i == my_tiles - 1, kTlEnd + 1);
    if (tid == 0) mbar_arrive_expect_tx(inbox_full + 8 * buf, kInboxBytes);
    if constexpr (kWarpsK == 1) {
      const std::uint32_t buf_bytes = buf * (kBlockT * kBlockH * sizeof(float));
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const std::uint32_t row_addr = push_row[mt][half] + buf_bytes, bar = push_bar[mt][half] + 8 * buf;
#pragma unroll
          for (int nt = 0; nt < kNT; nt += 2) {
            const bool odd = lane & 1;
            const float a0 = q[mt][nt][2 * half], a1 = q[mt][nt][2 * half + 1];          // block nt
            const float b0 = q[mt][nt + 1][2 * half], b1 = q[mt][nt + 1][2 * half + 1];  // block nt + 1
            // The even lane gives its block nt + 1 pair, the odd lane its block nt pair.
            const float r0 = __shfl_xor_sync(0xffffffffu, odd ? a0 : b0, 1);
            const float r1 = __shfl_xor_sync(0xffffffffu, odd ? a1 : b1, 1);
            st_async_f4_mapped(row_addr + push_col[nt / 2], bar, odd ? r0 : a0, odd ? r1 : a1, odd ? b0 : r0,
                               odd ? b1 : r1);
          }
        }
    } else {
#pragma unroll
      for (int i = 0; i < kPairsPerThread; ++i) {
        const int e = tid + i * kThreads;
        if (e < kBlockT * kBlockH / 2) {
          const int row = e / (kBlockH / 2), col = 2 * (e % (kBlockH / 2));
          st_async_f2(smem_addr(inbox + inbox_at(buf, rank * kRowsPerRank + row % kRowsPerRank, col)),
                      inbox_full + 8 * buf, row / kRowsPerRank, qd[i].x, qd[i].y);
        }
      }
    }
    DSA_TL(tid == 0 && tile_i == my_tiles - 1, kTlEnd + 2);
    if constexpr (kInboxBufs == 2) {
      if (tile_i > 0) finish(tile_i - 1);
      // The other buffer may be overwritten from here on: finish() consumed every value it read.
      if constexpr (kPrefill) {
        if (tile_i > 0) free_inbox(tile_i - 1);
      } else if (tile_i + 1 < my_tiles) {
        cluster_arrive_relaxed();
      }
    }
#pragma unroll
    for (int i = 0; i < kQuadsPerThread; ++i)
#pragma unroll
      for (int c = 0; c < kVec; ++c) qs_prev[i][c] = qs[i][c];
  };
  const std::uint32_t w_base = smem_addr(w_smem);
  const auto slot_addr = [&](int slot) {
    return smem_addr(x_smem) + slot * slot_bytes;
  };

  if constexpr (kPrefill) {
    // Prefill with wgmma: warpgroup wg owns rows [64 wg, 64 wg + 64) x kWarpHeads heads; one
    // 64 x kWarpHeads x 16 product per step, chained from zero as in the mma.sync paths.
    // Software-pipelined by one wave: wave s's wgmmas are issued before wave s - 1's are waited for
    // and summed, so the tensor cores run while the warps do the bookkeeping of the previous wave
    // (one warp per scheduler: every instruction's latency is exposed otherwise).
    static_assert(kWarpsK == 1 && kWarpRows == 16 && kMT == 1 && kBlockT % 64 == 0,
                  "wgmma mode: warpgroups of 4 warps x 16 rows");
    using Acc = float[1][kNT][4];
    // Issues wave s (cursor at) into acc: waits for its x tile, then one wgmma chain from zero.
    const auto issue = [&](Acc& acc, const Cursor& at, int s) {
      if (kWChunkBars && s < waves_per_tile) mbar_wait_parity(w_full + 8 * at.wave, 0);  // tile 0: wave = chunk
      DSA_TL(tid == 0 && s == 0, 2);
      mbar_wait_parity(slot_full + 8 * at.slot, at.phase);
      DSA_TL(!kTlWaves && tid == 0 && 9 + 2 * s < kTlEnd, 9 + 2 * s);
      DSA_TLW(s, 2);
      // Descriptors of step 0 (recomputing them per wgmma cost ~10 instructions each).
      const std::uint32_t a_desc = smem_desc_lo(slot_addr(at.slot) + (wg / Cfg::kWarpsH) * 64 * kHalfRowBytes);
      const std::uint32_t w_chunk =
          kStreamW ? slot_addr(at.slot) + kXSlotBytes : w_base + at.wave * kBlockH * kRowBytes;
      const std::uint32_t b_desc = smem_desc_lo(w_chunk + warp_head0 * kHalfRowBytes);
      wgmma_chunk_chain<kWarpHeads, kBlockT, kBlockH>(acc[0], a_desc, b_desc);
      DSA_TLW(s, 3);
    };
    // Waits for the wave in flight and pins its accumulators (the wait names no registers: without
    // the pin the compiler could read them earlier).
    const auto complete = [&](Acc& acc) {
      wgmma_wait<0>();
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int i = 0; i < 4; ++i) asm volatile("" : "+f"(acc[0][nt][i])::"memory");
    };
    // The producer warp: its first lane issues every load of the ring, each as soon as the consumer
    // warps have retired the slot (slot_empty), and the weight chunks of a resident slice between
    // the first waves. Then the warp leaves. With the consumers issuing the refills themselves
    // (thread 0, after a __syncthreads), a wave cost ~850 cycles at T64H64tma against 332 for its
    // wgmma chain alone (dev/cuda/wgmma_rate): the barrier, the TMA issue and the sums ran one after
    // the other on the one warpgroup (dev/cuda/timeline with DSA_TIMELINE_WAVES). Sweep, weight from
    // HBM (NOTES.md version 50): DeepSeek T = 1024 9.87 -> 8.89 us, 2048 13.42 -> 12.66, 4096
    // 20.78 -> 19.89, 16384 62.91 -> 62.37.
    if (warp == kConsumerWarps) {
      Cursor at;
      const auto produce = [&](int w_end) {
        if (lane != 0) return;
#pragma unroll 1
        for (int w = at.tile * waves_per_tile + at.wave; w < w_end; ++w) {
          if (w >= kSlots) mbar_wait_parity(slot_empty + 8 * at.slot, at.phase ^ 1);
          if (weight_by_wave && w < kSlots && w < nchunks) load_weight_chunk(w);  // the rest: below
          load_wave(at);
          if (weight_by_wave && w == kSlots - 1)
            for (int c = kSlots; c < nchunks; ++c) load_weight_chunk(c);
          at.advance(waves_per_tile);
        }
      };
      // The cluster wait that pairs the arrival at the start comes once the consumers can reach
      // theirs, not after the last load: they take it when they retire the first tile's last wave,
      // after issuing the next wave, and compute-sanitizer racecheck lets no wait of the cluster
      // barrier complete before every thread of the cluster has reached its own. Waiting later, for
      // slots of tile 1, the producer never got there; waiting before the next wave's load, the
      // consumers never did (NOTES.md version 51).
      produce(min(waves_per_tile + 1, num_waves));
      __syncwarp();
      cluster_wait();
      produce(num_waves);
      return;
    }
    // Retires wave s (cursor at), already summed into q: its slot goes back to the producer, and a
    // finished tile is pushed.
    const auto retire = [&](const Cursor& at, int s) {
      DSA_TLW(s + 1, 4);
      if constexpr (kInboxBufs == 1) {
        // One inbox buffer (it frees shared memory for a deeper ring): tile i - 1 is finished half
        // way through tile i, half a tile after its sums were pushed, and the credits let the
        // peers push tile i into the same buffer at its end.
        if (at.wave == waves_per_tile / 2 && at.tile > 0) {
          finish(at.tile - 1);
          free_inbox(at.tile - 1);
        }
      }
      if (at.wave == waves_per_tile - 1) end_tile(at.tile);
      DSA_TLW(s + 1, 5);
    };
    // Iteration s sums wave s - 1 into q, issues wave s, and retires wave s - 1 (its slot back to
    // the producer, the end of a tile) while wave s runs on the tensor cores. One accumulator set, one issue site: the
    // version with two alternating sets (summing one while the other ran) made ptxas serialise every
    // wgmma (warning C7514) and quadrupled the code, which slowed the first call (NOTES.md).
    Acc acc;
    Cursor cur, prev;  // the wave to issue, the wave in flight
    issue(acc, cur, 0);
    prev = cur;
    cur.advance(waves_per_tile);
#pragma unroll 1
    for (int s = 1; s <= num_waves; ++s) {
      complete(acc);  // wave s - 1 is done in this warp
      if (lane == 0) mbar_arrive(slot_empty + 8 * prev.slot);  // and its slot is free
      DSA_TLW(s, 0);
      DSA_TL(tid == 0 && s == num_waves, kTlEnd);
      if (prev.wave == 0) begin_tile(prev.tile);
      accumulate(q, acc);
      DSA_TLW(s, 1);
      if (s < num_waves) issue(acc, cur, s);
      retire(prev, s - 1);
      prev = cur;
      cur.advance(waves_per_tile);
    }
    // Nothing is in flight here (the last iteration issued nothing); ptxas cannot tell, and would
    // inject this wait itself with a warning (C7517).
    wgmma_wait<0>();
  } else {
    // Decode mode: the chunks of a wave run side by side, warp set warp_chunk on chunk
    // chunk0 + warp_chunk; their partials meet in shared memory and join q in chunk order.
    static_assert(kWarpsK > 1 && !kPrefill, "decode mode: chunk-parallel warp sets fed by cp.async");
    Cursor cur;  // the wave to compute
#pragma unroll 1
    for (int s = 0; s < num_waves; ++s, cur.advance(waves_per_tile)) {
      const int tile_i = cur.tile;
      const int wave_in_tile = cur.wave;
      const int chunk0 = wave_in_tile * kChunksPerWave;
      if (wave_in_tile == 0) begin_tile(tile_i);
      if constexpr (kEarlyFirstWave) {
        // The slot refilled here (wave s with one slot, s + 1 with two; the prologue loaded wave
        // 0) was last read by the wave before s, whose readers are past the barrier that followed
        // their partial stores.
        if (kSlots == 1 ? s > 0 : s + kSlots - 1 < num_waves) {
          load_wave(ahead);
          ahead.advance(waves_per_tile);
        }
        if constexpr (kBulk) {
          // Every thread waits for the copies itself.
          if (s == 0) mbar_wait_parity(w_full, 0);
          DSA_TL(tid == 0 && s == 0, 2);
          mbar_wait_parity(slot_full + 8 * cur.slot, cur.phase);
        } else if (chunk0 + warp_chunk < nchunks) {
          // Chunks by TMA: each warp waits for its own chunk only.
          if (s == 0) mbar_wait_parity(w_full + 8 * warp_chunk, 0);
          mbar_wait_parity(slot_full + 8 * (cur.slot * kSlotBars + warp_chunk), cur.phase);
        }
      } else if constexpr (kSlots == 1) {
        // The only slot was last read by wave s - 1, whose readers are past the barrier that
        // followed their partial stores.
        load_wave(ahead);
        cp_async_commit();
        ahead.advance(waves_per_tile);
        cp_async_wait<0>();
        __syncthreads();
        if (kTmaW && s == 0) mbar_wait_parity(w_full, 0);
      } else {
        cp_async_wait<kSlots - 2>();
        __syncthreads();
        if (kTmaW && s == 0) mbar_wait_parity(w_full, 0);
        // Refill the slot everyone finished reading in iteration s - 1 before computing, so that
        // kSlots - 1 slots are in flight during the MMAs (the ring is what hides HBM latency).
        if (s + kSlots - 1 < num_waves) load_wave(ahead);
        cp_async_commit();
        ahead.advance(waves_per_tile);
      }

      DSA_TL(tid == 0 && 9 + 2 * s < kTlEnd, 9 + 2 * s);
      const int chunk = chunk0 + warp_chunk;
      float acc[kMT][kNT][4];
      if (chunk < nchunks && kBulk) {
        chunk_mma_pitched(acc, slot_addr(cur.slot) + bulk_a_off + chunk * kRowBytes, w_base + bulk_b_off + chunk * kRowBytes,
                          pitch, chunk_steps(chunk));
      } else if (chunk < nchunks) {
        chunk_mma(acc, frag, slot_addr(cur.slot) + warp_chunk * kBlockT * kRowBytes,
                  w_base + chunk * kBlockH * kRowBytes, chunk_steps(chunk));
      } else {
        zero(acc);
      }
      // Timeline builds: the last wave's end, step by step (events 240-242, see DSA_TIMELINE).
      [[maybe_unused]] const bool tl_last = s == num_waves - 1 && num_waves < 100;
      DSA_TL(tid == 0 && tl_last, 240);
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int row = warp_row0 + mt * 16 + lane / 4 + half * 8;
            const int col = warp_head0 + nt * 8 + 2 * (lane % 4);
            *reinterpret_cast<float2*>(part + (warp_chunk * kBlockT + row) * kRedPitch + col) =
                make_float2(acc[mt][nt][2 * half], acc[mt][nt][2 * half + 1]);
          }
      __syncthreads();  // the wave's chunk partials are in shared memory
      DSA_TL(tid == 0 && tl_last, 241);
      // Join them to q in chunk order; thread tid keeps q of the flat (row, head pair) slots
      // tid + i * kThreads across the waves of a tile.
      const int nvalid = min(kWarpsK, nchunks - chunk0);
#pragma unroll
      for (int i = 0; i < kPairsPerThread; ++i) {
        const int e = tid + i * kThreads;
        if (e < kBlockT * kBlockH / 2) {
          const int row = e / (kBlockH / 2), col = 2 * (e % (kBlockH / 2));
          if (wave_in_tile == 0) qd[i] = make_float2(0.f, 0.f);
          // Every partial's load first, then the adds in chunk order: a loop bounded by nvalid alone
          // chained each add behind its own load (versions 59 and 62: -0.1 to -0.15 us in the 8-,
          // 16- and 32-head tiles; mixed in T16H32s1TmaW, -0.14 to +0.28; behind in the bulk-copy
          // tile, which keeps the loop).
          if constexpr (!kBulk) {
            float2 v[kWarpsK];
#pragma unroll
            for (int c = 0; c < kWarpsK; ++c) {
              if (c < nvalid) v[c] = *reinterpret_cast<const float2*>(part + (c * kBlockT + row) * kRedPitch + col);
            }
#pragma unroll
            for (int c = 0; c < kWarpsK; ++c) {
              if (c < nvalid) {
                qd[i].x = __fadd_rn(qd[i].x, v[c].x);
                qd[i].y = __fadd_rn(qd[i].y, v[c].y);
              }
            }
          } else {
            for (int c = 0; c < nvalid; ++c) {
              const float2 v = *reinterpret_cast<const float2*>(part + (c * kBlockT + row) * kRedPitch + col);
              qd[i].x = __fadd_rn(qd[i].x, v.x);
              qd[i].y = __fadd_rn(qd[i].y, v.y);
            }
          }
        }
      }
      DSA_TL(tid == 0 && tl_last, 242);
      const bool tile_done = wave_in_tile == waves_per_tile - 1;
      if (tile_done) {
        end_tile(tile_i);
      } else {
        __syncthreads();  // part is rewritten by the next wave
      }
    }
  }
  DSA_TL(tid == 0, 5);
  finish(my_tiles - 1);
  DSA_TL(tid == 0, 3);
#ifdef DSA_TIMELINE
  if (tid == 0 && tl_cta != nullptr) {
    unsigned smid;
    asm volatile("mov.u32 %0, %%smid;\n" : "=r"(smid));
    tl_cta[8] = smid;
    tl_cta[9] = static_cast<unsigned>(num_waves) | (static_cast<unsigned long long>(my_tiles) << 32);
  }
#endif
  // No barrier at the end: once a CTA's inbox barrier completed for its last tile, no peer writes
  // to its shared memory any more.
#endif
}

template <class Cfg>
constexpr std::size_t weight_barriers(std::size_t nchunks) {  // one per chunk of a resident prefill slice
  return Cfg::kPrefill && !Cfg::kStreamW ? nchunks : Cfg::kTmaX ? Cfg::kWarpsK : 1;
}
template <class Cfg>
std::size_t smem_bytes(const KernelParams& p) {
  const std::size_t nchunks = (p.G + kChunk - 1) / kChunk;
  const std::size_t rows = Cfg::kBlockH + Cfg::kSlots * Cfg::kBlockT;  // resident weight + ring (bulk tiles)
  const std::size_t slot = (static_cast<std::size_t>(Cfg::kWarpsK) * Cfg::kBlockT + (Cfg::kStreamW ? Cfg::kBlockH : 0)) * kRowBytes;
  const std::size_t weight_and_ring =
      Cfg::kBulk ? rows * bulk_pitch(p.G)
                 : (Cfg::kStreamW ? 0 : nchunks * Cfg::kBlockH * kRowBytes) + Cfg::kSlots * slot;
  const std::size_t red_tile = static_cast<std::size_t>(Cfg::kBlockT) * (Cfg::kBlockH + 8) * sizeof(float);
  return weight_and_ring + (Cfg::kWarpsK > 1 ? Cfg::kWarpsK * red_tile : 0) +
         Cfg::kInboxBufs * static_cast<std::size_t>(Cfg::kBlockT) * Cfg::kBlockH * sizeof(float) /* inbox */ +
         8 * (Cfg::kInboxBufs + Cfg::kSlots * (Cfg::kTmaX ? Cfg::kWarpsK : 1) + weight_barriers<Cfg>(nchunks) +
              (Cfg::kPrefill ? Cfg::kSlots + Cfg::kInboxBufs : 0)) /* mbarriers: inbox, ring, weight, credits */ +
         (Cfg::kPrefill ? 4 * Cfg::kInboxBufs * kClusterSize * (Cfg::kThreads / 32) : 0) /* credit words */;
}

template <class Cfg>
cudaLaunchConfig_t make_config(dim3 grid, std::size_t smem, cudaStream_t stream,
                               cudaLaunchAttribute (&attrs)[2]) {
  attrs[0].id = cudaLaunchAttributeClusterDimension;
  attrs[0].val.clusterDim.x = kClusterSize;
  attrs[0].val.clusterDim.y = 1;
  attrs[0].val.clusterDim.z = 1;
  attrs[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attrs[1].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(Cfg::kBlockThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attrs;
  cfg.numAttrs = 2;
  return cfg;
}

// Clusters of this configuration that fit on the device at once (the persistent grid size).
// Queried once per (device, config, shared-memory size): an occupancy query, not a tuning run.
template <class Cfg>
int max_active_clusters(int device, std::size_t smem) {
  static std::mutex mu;
  static std::map<std::pair<int, std::size_t>, int> cache;
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_pair(device, smem);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  DSA_CUDA_CHECK(cudaFuncSetAttribute(sm90_logits_head_gate_kernel<Cfg>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      device_max_smem(device)));
  cudaLaunchAttribute attrs[2];
  const cudaLaunchConfig_t cfg = make_config<Cfg>(dim3(kClusterSize), smem, nullptr, attrs);
  int n = 0;
  DSA_CUDA_CHECK(cudaOccupancyMaxActiveClusters(&n, sm90_logits_head_gate_kernel<Cfg>, &cfg));
  DSA_CHECK(n >= 1, "sm90 kernel " << Cfg::name() << " cannot be resident with " << smem
                                   << " bytes of shared memory");
  cache[key] = n;
  return n;
}

// Prefill tiles also need every chunk full (G % 128 == 0, that is K % 1024 == 0: DeepSeek-V3.2's
// 7168 and GLM-5's 6144): one fixed wgmma chain per wave keeps their code small (a variant per
// short-chunk length tripled it and slowed the first call, NOTES.md version 13).
template <class Cfg>
bool fits(const KernelParams& p, int device) {
  return (!Cfg::kPrefill || p.G % kChunk == 0) && (!Cfg::kBulk || (p.G + kChunk - 1) / kChunk <= Cfg::kWarpsK) &&
         (!Cfg::kTmaW || (p.G % 64 == 0 && p.G / 64 <= 256)) /* the slice in one box of <= 256 blocks */ &&
         (!Cfg::kTmaX || (p.G % 64 == 0 && (p.G + kChunk - 1) / kChunk <= Cfg::kWarpsK)) /* one wave a tile */ &&
         smem_bytes<Cfg>(p) <= static_cast<std::size_t>(device_max_smem(device));
}

template <class Cfg>
void launch(const KernelParams& p, int device, cudaStream_t stream) {
  DSA_CHECK(fits<Cfg>(p, device), "sm90 tile " << Cfg::name() << " does not apply to K = " << p.K);
  const std::size_t smem = smem_bytes<Cfg>(p);
  const int clusters = max_active_clusters<Cfg>(device, smem);
  const std::int64_t head_groups = (p.H + Cfg::kBlockH - 1) / Cfg::kBlockH;
  const std::int64_t tiles = (p.T + Cfg::kBlockT - 1) / Cfg::kBlockT;
  DSA_CHECK(head_groups <= 65535, "H = " << p.H << " is too large for the sm90 kernel");
  // Persistent: as many tile workers as fit beside the head groups, never more than tiles.
  const std::int64_t workers =
      std::max<std::int64_t>(1, std::min<std::int64_t>(tiles, clusters / head_groups));
  const dim3 grid(static_cast<unsigned>(workers * kClusterSize), static_cast<unsigned>(head_groups));
  cudaLaunchAttribute attrs[2];
  const cudaLaunchConfig_t cfg = make_config<Cfg>(grid, smem, stream, attrs);
  CUtensorMap tmap_x{}, tmap_w{};
  if constexpr (Cfg::kPrefill) tmap_x = make_tensor_map(p.x, p.K, p.T, p.ldx, Cfg::kBlockT);
  if constexpr (Cfg::kPrefill) tmap_w = make_tensor_map(p.w, p.K, p.H, p.ldw, Cfg::kBlockH);
  // The decode tiles' weight slice: the whole K group (G / 64 blocks) in one box.
  if constexpr (Cfg::kTmaW) tmap_w = make_block_tensor_map(p.w, p.K, p.H, p.ldw, Cfg::kBlockH, p.G / 64);
  // Chunk-by-TMA decode tiles: boxes of one chunk (two blocks) of x and of the weight.
  if constexpr (Cfg::kTmaX) {
    tmap_x = make_block_tensor_map(p.x, p.K, p.T, p.ldx, Cfg::kBlockT, 2);
    tmap_w = make_block_tensor_map(p.w, p.K, p.H, p.ldw, Cfg::kBlockH, 2);
  }
  DSA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, sm90_logits_head_gate_kernel<Cfg>, p, tmap_x, tmap_w));
}

// kPrefill_: TMA-fed wgmma tile (prefill mode); otherwise cp.async-fed mma.sync (decode mode).
// kStreamW_ (prefill only): the weight chunk travels with each wave through the ring instead of
// staying resident, which frees the shared memory of the slice for larger token tiles.
// kInboxBufs_: buffers of the cluster reduction's inbox (2, or 1 to make room for a deeper ring).
// kMinBlocks_: CTAs per SM the registers must allow (launch bounds); shared memory must allow as many.
// kBulk_ (decode only): x and the weight arrive as whole rows of the K group, one 1-D bulk copy per
// row, stored at bulk_pitch(G); needs every chunk of the group in one wave (fits()).
// kTmaW_ (cp.async decode tiles only): the weight slice arrives by TMA instead of cp.async.
// kTmaX_ (a variant of the cp.async decode tiles): x and the weight slice arrive by TMA, one box
// per chunk issued by the warp that multiplies it, each on its own mbarrier; one wave per tile.
template <int kT, int kH, int kWT, int kWH, int kWK, int kSlots_, bool kPrefill_ = false, bool kStreamW_ = false,
          int kInboxBufs_ = 2, int kMinBlocks_ = 1, bool kBulk_ = false, bool kTmaW_ = false, bool kTmaX_ = false>
struct Config {
  static constexpr bool kFullK = false;  // the cluster kernel (sm90_full_k.cuh has the other)
  static constexpr bool kBulk = kBulk_, kTmaW = kTmaW_, kTmaX = kTmaX_;
  static constexpr int kMinBlocks = kMinBlocks_;
  static constexpr bool kPrefill = kPrefill_, kStreamW = kStreamW_;
  static constexpr int kInboxBufs = kInboxBufs_;
  static constexpr int kBlockT = kT, kBlockH = kH, kWarpsT = kWT, kWarpsH = kWH, kWarpsK = kWK;
  static constexpr int kSlots = kSlots_;
  static constexpr int kThreads = 32 * kWT * kWH * kWK;  // the warps that compute
  static constexpr int kBlockThreads = kThreads + (kPrefill ? 32 : 0);  // + the producer warp of prefill tiles
  static_assert(kT % (16 * kWT) == 0 && kH % (8 * kWH) == 0, "warp tiles are m16 x n8 multiples");
  static std::string label() {
    return "T" + std::to_string(kT) + "H" + std::to_string(kH) + (kStreamW ? "ws" : kPrefill ? "tma" : "") +
           (kSlots_ == 1 ? "s1" : "") + (kBulk_ ? "b" : "") + (kTmaW_ ? "tw" : "") + (kTmaX_ ? "tx" : "") +
           (kPrefill && kMinBlocks_ > 1 ? "x" + std::to_string(kMinBlocks_) : std::string());
  }
  static std::string name() {
    return "sm90_cluster8<T" + std::to_string(kT) + ",H" + std::to_string(kH) + ",warps" +
           std::to_string(kWT) + "x" + std::to_string(kWH) + "x" + std::to_string(kWK) + ",slots" +
           std::to_string(kSlots_) + (kPrefill ? ",tma,wgmma" : kBulk_ ? ",bulk rows,mma.sync" : kTmaW_ ? ",weight by tma,cp.async,mma.sync" : kTmaX_ ? ",chunks by tma,mma.sync" : ",cp.async,mma.sync") +
           (kStreamW ? ",weight streamed" : "") + (kInboxBufs_ == 1 ? ",one inbox" : "") +
           (kMinBlocks_ > 1 ? "," + std::to_string(kMinBlocks_) + " per SM" : "") + ">";
  }
};

// The instantiated tiles; Sm90Tile in the header names them. Warps: tokens x heads x chunk sets
// (= chunks of K per ring slot); slots: ring depth. Tiles that lost in the sweeps (mma.sync
// prefill tiles, wgmma without TMA, two chunks per slot, two warpgroups splitting 64 heads, a
// streamed weight at 64 tokens, T128H64 with a 3-slot ring and two inbox buffers, T128H32 with one
// inbox buffer and 5 slots, bulk-copy 16 x 16 and 16 x 32 tiles, a streamed-weight T64H64 with 2 slots
// and two inbox buffers) are in NOTES.md.
// T16H8b: T16H8 fed by 1-D bulk copies, one per row of the K group (NOTES.md version 35): faster
// at the smallest T, where a CTA loads 8 weight rows and a few rows of x.
// T16H16s1: T16H16 with one ring slot (74 KB, 80 registers), so three CTAs fit per SM and a grid
// of up to 22 clusters still leaves room for the next kernel's (the dispatch uses it where that
// count matters). One slot suits CTAs that run a single wave, as decode CTAs do: with more waves
// nothing would be loading while a wave computes.
// T16H32s1: 32 heads per CTA with one slot (112 KB at K = 7168, 109 registers: two CTAs per SM):
// half the clusters of the 16-head tiles, each pulling half as many copies of x (version 34).
// T16H8TmaW, T16H16TmaW, T16H32s1TmaW: T16H8, T16H16 and T16H32s1 taking their weight slice by TMA
// in one instruction (a 3-D box of the whole K group), so that x's copies are issued at once
// (versions 57-58): ahead wherever the grid and the next kernel's fit side by side, without a
// static weight (with one the cp.async twins copy the slice before the wait just as well), and
// the 32-head one with it too up to 16 clusters. A one-slot 16-head twin lost (version 58).
// T16H8TmaX, T16H16TmaX, T16H32s1TmaX: the same three taking x and the weight slice by TMA, one box
// per chunk (two 64-column blocks) issued by the warp that multiplies it, each on its own mbarrier,
// so that a warp's MMAs start once its own chunk has landed (version 59): ahead from T = 9 on, at
// every T the 32-head tile runs, and with a static weight too; behind at T = 1, where the slice of
// one box and x's few rows by cp.async cost less.
// T32H32s1TmaX: 32 tokens a tile, the one-slot 32-head TmaX tile's twin (172 KB at K = 7168: one CTA
// per SM, 138 registers; each warp runs its chunk's chain for both 16-row halves, so a weight
// fragment is read once for two MMAs): where the 16-token grid no longer fits twice, half its
// clusters pull a third fewer bytes through L2 (version 65).
// T64H64WsX2, T64H32WsX2: 64-token prefill tiles whose ring carries the weight chunk beside the x
// chunk (no weight slice to load before the first wave) with one inbox buffer, 113 and 105 KB, so
// two CTAs fit per SM: for grids small enough that the next kernel's fits beside them (version 42).
using ConfigT16H8 = Config<16, 8, 1, 1, 8, 2>;
using ConfigT16H8b = Config<16, 8, 1, 1, 8, 2, false, false, 2, 1, true>;
using ConfigT16H16 = Config<16, 16, 1, 1, 8, 2>;
using ConfigT16H16s1 = Config<16, 16, 1, 1, 8, 1, false, false, 2, 3>;
using ConfigT16H32s1 = Config<16, 32, 1, 1, 8, 1, false, false, 2, 2>;
using ConfigT16H8TmaW = Config<16, 8, 1, 1, 8, 2, false, false, 2, 1, false, true>;
using ConfigT16H16TmaW = Config<16, 16, 1, 1, 8, 2, false, false, 2, 1, false, true>;
using ConfigT16H32s1TmaW = Config<16, 32, 1, 1, 8, 1, false, false, 2, 2, false, true>;
using ConfigT16H8TmaX = Config<16, 8, 1, 1, 8, 2, false, false, 2, 1, false, false, true>;
using ConfigT16H16TmaX = Config<16, 16, 1, 1, 8, 2, false, false, 2, 1, false, false, true>;
using ConfigT16H32s1TmaX = Config<16, 32, 1, 1, 8, 1, false, false, 2, 2, false, false, true>;
using ConfigT32H32s1TmaX = Config<32, 32, 1, 1, 8, 1, false, false, 2, 1, false, false, true>;
using ConfigT32H32 = Config<32, 32, 2, 1, 4, 2>;
using ConfigT64H16Tma = Config<64, 16, 4, 1, 1, 4, true>;
using ConfigT64H32Tma = Config<64, 32, 4, 1, 1, 4, true>;
using ConfigT64H64Tma = Config<64, 64, 4, 1, 1, 5, true>;
using ConfigT128H32Tma = Config<128, 32, 8, 1, 1, 4, true>;
using ConfigT128H64Ws = Config<128, 64, 8, 1, 1, 4, true, true, 1>;
using ConfigT64H64WsX2 = Config<64, 64, 4, 1, 1, 3, true, true, 1, 2>;
using ConfigT64H32WsX2 = Config<64, 32, 4, 1, 1, 4, true, true, 1, 2>;

// A tile's entry points, for sm90_logits_head_gate.cpp; taken by the tile's own translation unit.
template <class Cfg>
int max_clusters(const KernelParams& p, int device) {
  return max_active_clusters<Cfg>(device, smem_bytes<Cfg>(p));
}
template <class Cfg>
const Sm90TileOps& tile_ops() {
  if constexpr (Cfg::kFullK) {
    return Cfg::ops();
  } else {
    static const Sm90TileOps ops = {&fits<Cfg>, &max_clusters<Cfg>, &launch<Cfg>, &Cfg::name, &Cfg::label};
    return ops;
  }
}

}  // namespace
}  // namespace dsa_indexer::cuda
