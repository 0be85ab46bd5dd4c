// sm_90a full-K prefill tiles: one CTA computes a tile of tokens x 64 heads over the whole of K by
// itself, walking the 8 K groups of kernel_params.h one after the other (group sums joined into the
// total in group order, chunk partials into a group sum in chunk order: the summation of every other
// kernel, so the bits are the same). No cluster, so no reduction between CTAs: no group sums pushed
// through distributed shared memory, whose stores move ~10 bytes a cycle per SM whichever way they
// go (dev/cuda/dsmem_rate, NOTES.md version 68), and no cluster placement, so every SM can hold a CTA
// (132 on the H200, against 120 for clusters of 8). The price: every CTA streams the whole weight
// (0.9 MB at DeepSeek's shape) from L2 beside its x rows.
//
// The MMA is wgmma with the 64 heads as M (A, the weight chunk) and the tile's tokens as N (B, the
// x chunk), so a tile can be 32 or 64 tokens: the grid at T = 4096 or 8192 is 128 CTAs, one round.
// A ring slot carries one 128-wide chunk of K of both operands, each operand one 3-D box of its two
// 64-column blocks (one TMA instruction where two 2-D boxes took two: at 32 tokens a tile the
// issuing thread's ~90 cycles per box were part of a wave's cost, NOTES.md version 68); a producer
// warp issues the loads.
#pragma once

#include "cuda/sm90_kernel.cuh"

namespace dsa_indexer::cuda {
namespace {

template <int kT, int kSlots_>
struct FullKConfig {
  static constexpr bool kFullK = true;
  static constexpr int kBlockT = kT, kBlockH = 64, kSlots = kSlots_;
  static constexpr int kThreads = 128;                                // one consumer warpgroup
  static constexpr int kBlockThreads = kThreads + 32;                 // + the producer warp
  static constexpr int kSlotBytes = (kBlockH + kBlockT) * kRowBytes;  // weight chunk, then x chunk
  static_assert(kT == 16 || kT == 32 || kT == 64, "wgmma N: instantiated for 16, 32 and 64 tokens");
  static_assert(kSlots_ >= 2, "two waves in flight per iteration");
  static std::string label() { return "T" + std::to_string(kT) + "H64fk"; }
  static std::string name() {
    return "sm90_full_k<T" + std::to_string(kT) + ",H64,slots" + std::to_string(kSlots_) +
           ",tma,wgmma heads x tokens,no cluster>";
  }
  static const Sm90TileOps& ops();
};

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kBlockThreads, 1)
    sm90_full_k_kernel(const KernelParams p, const __grid_constant__ CUtensorMap tmap_x,
                       const __grid_constant__ CUtensorMap tmap_w) {
#ifdef DSA_SM90_BODY
  constexpr int kT = Cfg::kBlockT, kH = Cfg::kBlockH, kSlots = Cfg::kSlots, kNT = kT / 8;
  constexpr int kSlotBytes = Cfg::kSlotBytes;
  extern __shared__ __align__(1024) unsigned char smem[];
  const std::uint32_t ring = smem_addr(smem);
  const std::uint32_t full = ring + kSlots * kSlotBytes;  // mbarriers: slot s landed [kSlots]
  const std::uint32_t empty = full + 8 * kSlots;          // the 4 consumer warps retired slot s [kSlots]
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int h0 = blockIdx.y * kH;
  // Chunks are 128 columns and groups whole chunks (fits(): G % 128 == 0), so wave w of a tile is
  // the chunk at column 128 w: group w / chunks_per_group, chunk w % chunks_per_group of it.
  const int chunks_per_group = p.G / kChunk;
  const int waves_per_tile = kNumKGroups * chunks_per_group;
  const std::int64_t num_tiles = (p.T + kT - 1) / kT;
  const int my_tiles = static_cast<int>((num_tiles - blockIdx.x + gridDim.x - 1) / gridDim.x);
  const auto tile_t0 = [&](int i) { return (blockIdx.x + static_cast<std::int64_t>(i) * gridDim.x) * kT; };
#ifdef DSA_TIMELINE
  // Dev timeline builds only (dev/cuda/timeline, layout in sm90_kernel.cuh): entry, wait, each
  // wave's load issued (producer) and data seen (thread 0), the last wave's chains done, exit.
  unsigned long long* const tl_cta =
      p.timeline ? p.timeline + (blockIdx.y * gridDim.x + blockIdx.x) * 2 * kTlEvents : nullptr;
#endif
  DSA_TL(tid == 0, 0);

  if (tid == Cfg::kThreads) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(&tmap_x)) : "memory");
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<std::uint64_t>(&tmap_w)) : "memory");
  }
  if (tid == 0) {
    for (int s = 0; s < kSlots; ++s) {
      mbar_init(full + 8 * s, 1);
      mbar_init(empty + 8 * s, Cfg::kThreads / 32);
    }
  }
  __syncthreads();
  // Before the previous kernel is done: the first slots' columns of this CTA's weight rows and of
  // its first tile's x rows into L2 (a prefetch returns nothing to the SM; see sm90_kernel.cuh).
  {
    const int w_rows = min(kH, p.H - h0);
    const int x_rows = static_cast<int>(min(static_cast<std::int64_t>(kT), p.T - tile_t0(0)));
    const unsigned bytes = static_cast<unsigned>(min(p.K, kSlots * kChunk)) * 2;
    for (int i = tid; i < w_rows + x_rows; i += Cfg::kBlockThreads) {
      const std::uint16_t* row = i < w_rows ? p.w + (h0 + i) * p.ldw : p.x + (tile_t0(0) + i - w_rows) * p.ldx;
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(row), "r"(bytes) : "memory");
    }
  }
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  DSA_TL(tid == 0, 1);
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");

  const int num_waves = my_tiles * waves_per_tile;
  if (warp == Cfg::kThreads / 32) {
    // The producer: its first lane loads every wave, each once the consumers retired its slot.
    if (lane != 0) return;
    int slot = 0, wave = 0, tile = 0;
    unsigned phase = 0;
#pragma unroll 1
    for (int w = 0; w < num_waves; ++w) {
      if (w >= kSlots) mbar_wait_parity(empty + 8 * slot, phase ^ 1);
      DSA_TL(8 + 2 * w < kTlEnd, 8 + 2 * w);
      const std::uint32_t bar = full + 8 * slot, dst = ring + slot * kSlotBytes;
      const int k0 = wave * kChunk;
      mbar_arrive_expect_tx(bar, kSlotBytes);
      // One 3-D box per operand: both 64-column blocks of the chunk in one instruction.
      tma_load_blocks(dst, &tmap_w, h0, k0 / 64, bar, l2_policy<kEvictLast>());
      tma_load_blocks(dst + kH * kRowBytes, &tmap_x, static_cast<int>(tile_t0(tile)), k0 / 64, bar,
                      l2_policy<kEvictFirst>());
      if (++wave == waves_per_tile) wave = 0, ++tile;
      if (++slot == kSlots) slot = 0, phase ^= 1;
    }
    return;
  }

  // The consumer warpgroup. Accumulator fragment of wgmma m64nN: warp w holds heads 16 w + lane / 4
  // (elements 0, 1) and + 8 (elements 2, 3), tokens 8 j + 2 (lane % 4) + (element & 1).
  const int head_lo = h0 + 16 * warp + lane / 4;
  const int tok_lo = 2 * (lane % 4);
  using Acc = float[1][kNT][4];
  Acc acc_a, acc_b, q, total, qs;
  int slot = 0;
  unsigned phase = 0;
  const auto next = [](int& s, unsigned& ph) {
    if (++s == kSlots) s = 0, ph ^= 1;
  };
  // Waits for wave w (the CTA's w-th), in ring slot s, and issues its chain into acc: 8 k16 steps
  // from zero.
  const auto issue = [&](Acc& acc, int s, unsigned ph, int w) {
    mbar_wait_parity(full + 8 * s, ph);
    DSA_TL(tid == 0 && 9 + 2 * w < kTlEnd, 9 + 2 * w);
    const std::uint32_t a_desc = smem_desc_lo(ring + s * kSlotBytes);
    const std::uint32_t b_desc = smem_desc_lo(ring + s * kSlotBytes + kH * kRowBytes);
    wgmma_chunk_chain<kT, kH, kT>(acc[0], a_desc, b_desc);
  };
  // A finished chain (its wgmma_wait passed): pins its accumulators (the wait names no registers:
  // without the pin the compiler could read them earlier), gives the slot back, and joins the chunk
  // partial into the group sum, a finished group sum into the total.
  const auto retire = [&](Acc& acc, int s, int& chunk) {
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(acc[0][j][e])::"memory");
    if (lane == 0) mbar_arrive(empty + 8 * s);
    accumulate(q, acc);  // q = ((0 + p_0) + p_1) + ...
    if (++chunk == chunks_per_group) {
      chunk = 0;
      accumulate(total, q);  // total = ((0 + q_0) + q_1) + ...
      zero(q);
    }
  };
  // Calls f(j, e, t, h) for each element (j, e) of this thread's fragment: token t, head h.
  const auto each_output = [&](std::int64_t t0, auto&& f) {
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) f(j, e, t0 + 8 * j + tok_lo + (e & 1), head_lo + (e >> 1) * 8);
  };
#pragma unroll 1
  for (int tile = 0; tile < my_tiles; ++tile) {
    const std::int64_t t0 = tile_t0(tile);
    // q_scale of this thread's outputs, fetched now so that the epilogue does not wait for it.
    each_output(t0, [&](int j, int e, std::int64_t t, int h) {
      qs[0][j][e] = (t < p.T && h < p.H) ? __ldg(p.q_scale + t * p.qs_t + h * p.qs_h) : 0.f;
    });
    zero(total);
    zero(q);
    int chunk = 0;
    // Two waves per iteration, on two accumulator sets: wave w + 1's chain is issued before wave
    // w's is waited for, so the two 8-step chains (each step depends on the one before) share the
    // tensor cores instead of running one after the other (sweep, T32H64Fk at DeepSeek T = 4096:
    // 18.9 against 19.9 us; four chains in flight were no better, NOTES.md version 68). Nothing is
    // in flight across the back edge. Waves per tile = 8 groups x whole chunks: always even.
#pragma unroll 1
    for (int wave = 0; wave < waves_per_tile; wave += 2) {
      int slot_b = slot;
      unsigned phase_b = phase;
      next(slot_b, phase_b);
      const int w = tile * waves_per_tile + wave;
      issue(acc_a, slot, phase, w);
      issue(acc_b, slot_b, phase_b, w + 1);
      wgmma_wait<1>();  // wave w's chain is done
      retire(acc_a, slot, chunk);
      wgmma_wait<0>();
      DSA_TL(tid == 0 && w + 2 == num_waves, kTlEnd);
      retire(acc_b, slot_b, chunk);
      slot = slot_b;
      phase = phase_b;
      next(slot, phase);
    }
    each_output(t0, [&](int j, int e, std::int64_t t, int h) {
      if (t < p.T && h < p.H)
        p.out[t * p.out_t + static_cast<std::int64_t>(h) * p.out_h] =
            scale_output(total[0][j][e], p.n_heads_inv_sqrt, qs[0][j][e], p.softmax_scale);
    });
  }
  DSA_TL(tid == 0, 3);
#endif
}

template <class Cfg>
std::size_t full_k_smem_bytes() {
  return static_cast<std::size_t>(Cfg::kSlots) * Cfg::kSlotBytes + 16 * Cfg::kSlots;
}

// CTAs of the tile resident at once on the device (the persistent grid's size), cached.
template <class Cfg>
int full_k_max_ctas(int device) {
  static std::mutex mu;
  static std::map<int, int> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(device);
  if (it != cache.end()) return it->second;
  DSA_CUDA_CHECK(cudaFuncSetAttribute(sm90_full_k_kernel<Cfg>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      device_max_smem(device)));
  int per_sm = 0, sms = 0;
  DSA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, sm90_full_k_kernel<Cfg>, Cfg::kBlockThreads,
                                                               full_k_smem_bytes<Cfg>()));
  DSA_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  DSA_CHECK(per_sm >= 1, "sm90 kernel " << Cfg::name() << " cannot be resident");
  cache[device] = per_sm * sms;
  return per_sm * sms;
}

template <class Cfg>
bool full_k_fits(const KernelParams& p, int device) {
  return p.G % kChunk == 0 && p.K % 64 == 0 &&
         full_k_smem_bytes<Cfg>() <= static_cast<std::size_t>(device_max_smem(device));
}

// A full-K tile's cluster is one CTA: the CTAs resident at once.
template <class Cfg>
int full_k_max_clusters(const KernelParams&, int device) {
  return full_k_max_ctas<Cfg>(device);
}

template <class Cfg>
void full_k_launch(const KernelParams& p, int device, cudaStream_t stream) {
  DSA_CHECK(full_k_fits<Cfg>(p, device), "sm90 tile " << Cfg::name() << " does not apply to K = " << p.K);
  const std::int64_t head_groups = (p.H + Cfg::kBlockH - 1) / Cfg::kBlockH;
  const std::int64_t tiles = (p.T + Cfg::kBlockT - 1) / Cfg::kBlockT;
  DSA_CHECK(head_groups <= 65535, "H = " << p.H << " is too large for the sm90 kernel");
  const std::int64_t ctas =
      std::max<std::int64_t>(1, std::min<std::int64_t>(tiles, full_k_max_ctas<Cfg>(device) / head_groups));
  cudaLaunchAttribute attrs[1];
  attrs[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attrs[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3(static_cast<unsigned>(ctas), static_cast<unsigned>(head_groups));
  cfg.blockDim = dim3(Cfg::kBlockThreads);
  cfg.dynamicSmemBytes = full_k_smem_bytes<Cfg>();
  cfg.stream = stream;
  cfg.attrs = attrs;
  cfg.numAttrs = 1;
  // Boxes of a chunk's two 64-column blocks; K % 64 == 0 by fits().
  const CUtensorMap tmap_x = make_block_tensor_map(p.x, p.K, p.T, p.ldx, Cfg::kBlockT, 2);
  const CUtensorMap tmap_w = make_block_tensor_map(p.w, p.K, p.H, p.ldw, Cfg::kBlockH, 2);
  DSA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, sm90_full_k_kernel<Cfg>, p, tmap_x, tmap_w));
}

template <int kT, int kSlots>
const Sm90TileOps& FullKConfig<kT, kSlots>::ops() {
  using Cfg = FullKConfig<kT, kSlots>;
  static const Sm90TileOps o = {&full_k_fits<Cfg>, &full_k_max_clusters<Cfg>, &full_k_launch<Cfg>, &Cfg::name,
                                &Cfg::label};
  return o;
}

// T64H64Fk: 64 tokens a tile (m64n64, 32 KB a slot, 6 slots); T32H64Fk: 32 (m64n32, 24 KB, 8 slots).
using ConfigT64H64Fk = FullKConfig<64, 6>;
using ConfigT32H64Fk = FullKConfig<32, 8>;

}  // namespace
}  // namespace dsa_indexer::cuda
