// CUDA backend entry point: argument and pointer checks, then the one dispatch from
// (T, H, K, alignment, architecture) to a kernel and tile, then the launch.
#include <cuda_runtime_api.h>

#include <mutex>
#include <sstream>

#include "common/check.h"
#include "cuda/cuda_check.h"
#include "cuda/generic_logits_head_gate.h"
#include "cuda/sm90_logits_head_gate.h"
#include "dsa_indexer/logits_head_gate.h"

namespace dsa_indexer {
namespace {

using cuda::KernelParams;
using cuda::Sm90Tile;

struct DeviceInfo {
  int device = 0;
  int cc_major = 0, cc_minor = 0;
};

DeviceInfo current_device() {
  DeviceInfo d;
  DSA_CUDA_CHECK(cudaGetDevice(&d.device));
  // Attribute reads are cheap but not free; the per-device answer never changes.
  static std::mutex mu;
  static int cached[64][2];
  static bool known[64] = {};
  if (d.device >= 0 && d.device < 64) {
    std::lock_guard<std::mutex> lock(mu);
    if (!known[d.device]) {
      DSA_CUDA_CHECK(cudaDeviceGetAttribute(&cached[d.device][0], cudaDevAttrComputeCapabilityMajor, d.device));
      DSA_CUDA_CHECK(cudaDeviceGetAttribute(&cached[d.device][1], cudaDevAttrComputeCapabilityMinor, d.device));
      known[d.device] = true;
    }
    d.cc_major = cached[d.device][0];
    d.cc_minor = cached[d.device][1];
  } else {
    DSA_CUDA_CHECK(cudaDeviceGetAttribute(&d.cc_major, cudaDevAttrComputeCapabilityMajor, d.device));
    DSA_CUDA_CHECK(cudaDeviceGetAttribute(&d.cc_minor, cudaDevAttrComputeCapabilityMinor, d.device));
  }
  return d;
}

// A pointer the kernels will dereference must be device (or managed) memory of the current device.
void check_device_pointer(const void* ptr, const char* name, int device) {
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error so later calls are unaffected
    DSA_CHECK(false, name << " must be CUDA device memory; cudaPointerGetAttributes failed with "
                          << cudaGetErrorName(err));
  }
  DSA_CHECK(attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged,
            name << " must be CUDA device memory on device " << device << ", got "
                 << (attr.type == cudaMemoryTypeHost ? "pinned host memory" : "host memory"));
  DSA_CHECK(attr.type == cudaMemoryTypeManaged || attr.device == device,
            name << " must be on the current CUDA device " << device << ", got device "
                 << attr.device);
}

KernelParams to_kernel_params(const LogitsHeadGateParams& p) {
  KernelParams k{};
  k.x = static_cast<const std::uint16_t*>(p.x);
  k.w = static_cast<const std::uint16_t*>(p.weight);
  k.q_scale = p.q_scale;
  k.out = p.out;
  // A single row's stride is never used; normalising it keeps alignment-based dispatch (and so
  // the kernel) the same for a row computed alone as for the same row inside a batch.
  k.ldx = p.T == 1 ? p.K : p.x_row_stride;
  k.ldw = p.H == 1 ? p.K : p.weight_row_stride;
  k.qs_t = p.q_scale_stride_t;
  k.qs_h = p.q_scale_stride_h;
  k.out_t = p.out_stride_t;
  k.out_h = p.out_stride_h;
  k.T = p.T;
  k.H = static_cast<int>(p.H);
  k.K = static_cast<int>(p.K);
  k.G = static_cast<int>(cuda::group_len(p.K));
  k.n_heads_inv_sqrt = p.n_heads_inv_sqrt;
  k.softmax_scale = p.softmax_scale;
  k.static_weight = p.static_weight;
  return k;
}

struct Choice {
  bool sm90 = false;
  Sm90Tile tile = Sm90Tile::kT16H8;
  const char* reason = "";
};

// The one dispatch point. Every choice computes bitwise the same values (kernel_params.h), so
// the tile is a pure speed decision, taken from the sweep in dev/cuda/sweep_sm90_tiles.cu on an
// H200 (src/cuda/NOTES.md has the tables; thresholds from sweeps 29, 32 and 36, all with the
// next kernel released after griddepcontrol.wait, and sweeps 20-21 for T128H64ws; decode checked
// in the benchmark):
// - decode (T <= 256): 16-token tiles, every chunk of a group run side by side (mma.sync); 8 heads
//   per CTA at the smallest T (T <= 16 at H = 64, T <= 32 at H = 32), then 16 or 32 by cluster
//   counts (decode below), so that 4-30 clusters pull the weight in parallel. x comes by cp.async,
//   the weight slice by one TMA instruction (a 3-D box of the whole K group, version 58) unless a
//   static weight is copied before the previous kernel ends; from 16 clusters of 32 heads on, the
//   mid-T tiles take over (version 58), except at H > 32 while a round of 32-token tiles holds
//   the grid (version 65).
//   The benchmark, where the weight comes from HBM, penalises more heads per CTA more than the
//   sweep, where it stays in L2 (NOTES.md version 25): 16 heads are taken only where the sweep has
//   them ahead by far more than that (DeepSeek T = 32: 2.46 against 3.06 us).
// - mid T: 64-token TMA + wgmma tiles with 16 or 32 heads: more clusters than all-head tiles
//   give, at the price of reading x once per head group (from L2 at these T).
// - prefill: all heads per cluster, so x crosses HBM once. At H <= 32 the weight slice stays
//   resident beside a ring of 128-token tiles (T128H32tma beyond the small grids of `mid`: from
//   T = 961, 513 with a static weight; version 48). At H = 64 (K = 7168) a resident slice (112 KB)
//   leaves room only for 64-token tiles, which issue too few bytes per instruction per wave but
//   leave a shorter last round; T128H64ws streams the weight chunk from L2 with each wave instead
//   (sweep 21: 243 against 274 us at T = 65536). Which of the
//   two, by their rounds (`prefill128` below, versions 46 and 48): T128H64ws at T = 961-1920
//   (one round against two; T64H64tma with a static weight), T64H64tma at 1921-2880, then the two
//   alternate with how full each one's last round is (T128H64ws at 2881-3840, 4801-5760,
//   6721-7680), and T128H64ws from 8641 on (10561 with a static weight). Below T ~ 1000, where the
//   grid is small, the mid-T tiles T64H32WsX2 and T64H64WsX2 stream the weight too, two CTAs per SM
//   (`mid` below).
// - prefill at 32 < H <= 64 where a grid of one CTA per SM fills whole rounds (DeepSeek T ~ 4096,
//   8192, 16384 on the H200): the full-K tiles (no cluster, each CTA all of K for its 32 or 64
//   tokens, version 68; `full_k` below).
// Tried and lost (numbers in NOTES.md): mma.sync prefill tiles, cp.async feeding wgmma, two chunks
// per ring slot, two warpgroups splitting the heads of a 64 x 64 tile, L2 prefetch of x ahead of
// the ring, 32- and 64-token decode tiles with one wave per tile fed by cp.async (again in version
// 58: T32H32s1; version 65's 32-token tile takes its chunks by TMA),
// a 32-token decode tile writing its chunk partials over its x slot, one-slot 16-head tiles with a
// TMA weight, prefill waves in one 3-D box (version 58).
Choice choose(const KernelParams& k, const DeviceInfo& dev, CudaPath path) {
  Choice c;
  if (path == CudaPath::kPortable) return c.reason = "portable path requested", c;
  if (!(dev.cc_major == 9 && dev.cc_minor == 0)) return c.reason = "no sm_90a kernel for this GPU", c;
  if (k.K % 128 != 0) return c.reason = "K % 128 != 0", c;
  const auto aligned16 = [](const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; };
  if (!aligned16(k.x) || !aligned16(k.w) || k.ldx % 8 != 0 || k.ldw % 8 != 0) {
    return c.reason = "x or weight rows not 16-byte aligned", c;
  }
  // TMA coordinates are 32-bit; beyond that the portable kernel takes over.
  if (k.T >= (std::int64_t{1} << 31)) return c.reason = "T >= 2^31", c;
  // Mid T: the 64-token tiles that stream the weight chunk with each wave instead of loading a
  // weight slice first (48-112 KB before the first wave), two CTAs per SM, and T64H64Tma: taken
  // while the grid is small enough that the next kernel's, as large, is resident beside it
  // (programmatic dependent launch then overlaps the two; H200: 30 clusters of either x2 tile
  // resident, 15 of T64H64Tma). 32 heads first (more clusters pull in parallel, each copies half
  // the weight), not at H <= 16, where half its heads would be padding. Benchmark, weight from HBM
  // (NOTES.md version 42): DeepSeek T = 256 6.33 against 6.96 us (T64H32Tma), T = 512 6.87 against
  // 7.83 (T64H64Tma, whose grid no longer fits twice there); GLM T = 512 4.91 against 5.80; where
  // both grids no longer fit they lost (T64H64WsX2 at DeepSeek T = 1024: 12.17 against 10.63).
  // At H > 32, T64H32WsX2 only up to 8 clusters: beyond, T64H64Tma with half the clusters leads
  // while its grid fits twice (version 58's sweep, weight from HBM: DeepSeek T = 288 / 320 / 384 /
  // 448 5.00 / 5.05 / 5.18 / 5.49 us against 5.04 / 5.20 / 5.49 / 5.78 for T64H32WsX2 and 5.16 /
  // 5.25 / 5.46 / 5.72 for T64H64WsX2; T = 512: T64H64WsX2 6.01 against 7.13).
  // A static weight is already in shared memory when a resident-weight tile starts, which the
  // streamed tiles cannot match beyond 8 clusters of 32 heads (version 45, weight from HBM:
  // DeepSeek T = 384 T64H64Tma 5.62 against 6.33 for T64H64WsX2, T = 512 6.53 against 6.82; GLM
  // T = 768 T64H32Tma 5.91 against 6.04; at 8 clusters T64H32WsX2 still leads: DeepSeek T = 256
  // 5.31 against 5.48, GLM T = 512 5.15 against 5.37).
  const auto mid = [&](Sm90Tile otherwise) {
    const std::int64_t tiles_t = (k.T + 63) / 64;
    const std::int64_t clusters32 = ((k.H + 31) / 32) * tiles_t, clusters64 = ((k.H + 63) / 64) * tiles_t;
    const auto fits_twice = [&](Sm90Tile tile, std::int64_t clusters) {
      return cuda::sm90_tile_fits(tile, k, dev.device) &&
             2 * clusters <= cuda::sm90_tile_max_clusters(tile, k, dev.device);
    };
    const bool few32 = clusters32 <= 8 || (k.H <= 32 && !k.static_weight);
    if (k.H > 16 && few32 && fits_twice(Sm90Tile::kT64H32WsX2, clusters32)) return Sm90Tile::kT64H32WsX2;
    if (k.H > 32 && fits_twice(Sm90Tile::kT64H64Tma, clusters64)) return Sm90Tile::kT64H64Tma;
    if (k.H > 32 && !k.static_weight && fits_twice(Sm90Tile::kT64H64WsX2, clusters64)) return Sm90Tile::kT64H64WsX2;
    return otherwise;
  };
  // Decode tiles with 16 or 32 heads, from the clusters the grid needs (one tile each: need16,
  // need32) against the clusters each tile keeps resident (occupancy query; H200: T16H16 30,
  // T16H16s1 45, T16H32s1 30). Best is a grid small enough that the next kernel's, as large, is
  // resident beside it: T16H16, else T16H32s1 with its weight slice by TMA from 8 such clusters of
  // 32 heads on, else T16H16s1 (one slot, three CTAs per SM). Beyond that, without a static
  // weight, the mid tiles' small grids (mid() above), then T16H32s1 (one slot, 32 heads) wherever
  // its grid runs in one round: half the clusters of the 16-head tiles, each token's x pulled by
  // half as many CTAs (benchmark, weight from HBM, NOTES.md version 37: DeepSeek T = 96 3.48
  // against 3.90 us for T16H16, T = 160 4.69 against 5.26 for T64H32tma; GLM T = 192 3.45 against
  // 3.69); not at H <= 16, where half its heads would be padding. Then whichever 16-head tile runs
  // in one round. `otherwise` (a callable, asked only when no decode tile applies) gives the tile
  // beyond them.
  // With a static weight, copied before the previous kernel ends, pulling more weight per CTA
  // costs little, and T16H32s1 goes before T16H16s1 and the mid tiles (version 45, weight from
  // HBM: DeepSeek T = 64 2.81 against 3.08 us, GLM T = 128 2.76 against 2.93; version 58's sweep:
  // DeepSeek T = 128 3.71 against 4.09 for T64H32WsX2, GLM T = 256 3.54 against 3.72).
  const auto decode = [&](auto otherwise) {
    if (!cuda::sm90_tile_fits(Sm90Tile::kT16H16, k, dev.device)) return otherwise();
    const std::int64_t tiles_t = (k.T + 15) / 16;
    const std::int64_t need16 = ((k.H + 15) / 16) * tiles_t, need32 = ((k.H + 31) / 32) * tiles_t;
    const int two = cuda::sm90_tile_max_clusters(Sm90Tile::kT16H16, k, dev.device);
    // T16H16 with its weight slice by TMA (one box), unless the weight is static and copied before
    // the wait anyway (version 58's sweep, weight from HBM: DeepSeek T = 24 / 32 2.49 / 2.58 us
    // against 2.62 / 2.65, GLM T = 48 / 64 2.33 / 2.44 against 2.50 / 2.54; static even or behind,
    // DeepSeek T = 1 1.98 against 1.93).
    // From T = 9 on, static or not, its twin taking x and the weight by TMA chunk by chunk goes first
    // (version 59's sweep, weight from HBM: DeepSeek T = 32 2.35 against 2.42 us for T16H16TmaW,
    // GLM T = 64 2.21 against 2.31; static DeepSeek T = 16 1.92 against 2.05 for T16H16, T = 32
    // even, T = 48 behind, 2.41 against 2.32; at T = 1 behind, 2.06 against 1.92).
    const bool tx16 = k.T > 8 && cuda::sm90_tile_fits(Sm90Tile::kT16H16TmaX, k, dev.device);
    const bool tw16 = !k.static_weight && cuda::sm90_tile_fits(Sm90Tile::kT16H16TmaW, k, dev.device);
    if (2 * need16 <= two) return tx16 ? Sm90Tile::kT16H16TmaX : tw16 ? Sm90Tile::kT16H16TmaW : Sm90Tile::kT16H16;
    const bool s1 = cuda::sm90_tile_fits(Sm90Tile::kT16H16s1, k, dev.device);
    const int three = s1 ? cuda::sm90_tile_max_clusters(Sm90Tile::kT16H16s1, k, dev.device) : 0;
    const int max32 = cuda::sm90_tile_fits(Sm90Tile::kT16H32s1, k, dev.device)
                          ? cuda::sm90_tile_max_clusters(Sm90Tile::kT16H32s1, k, dev.device)
                          : 0;
    const bool h32 = k.H > 16 && need32 <= max32;
    // From 8 clusters of 32 heads while both grids fit: T16H32s1 with its weight slice by TMA (one
    // box), ahead of every other decode choice there (version 58's sweep, weight from HBM: DeepSeek
    // T = 64 2.96 against 3.30 us for T16H32s1, T = 112 3.49 against 3.68; GLM T = 128 2.79 against
    // 3.19, T = 224 3.10 against 3.68). Below 8 the 16-head tiles, whose grid then fits twice, go
    // first (DeepSeek T = 48: T16H16TmaW 2.83 us, as T16H32s1TmaW); beyond, without a static weight,
    // T64H32WsX2 (below).
    // Its twin taking x and the weight by TMA chunk by chunk goes first where it applies (K <= 8192;
    // version 59's sweep, weight from HBM: DeepSeek T = 64 / 96 2.90 / 3.30 us against 2.95 / 3.44
    // for T16H32s1TmaW, GLM T = 128 2.69 against 2.77), up to one cluster past half the resident
    // ones (version 60's sweep: at 16 of 30, DeepSeek T = 128 4.07 against 4.09 for T64H32WsX2,
    // GLM T = 256 3.61 against 3.72; at 20, DeepSeek T = 160, even, 4.38).
    const bool tx32 = h32 && cuda::sm90_tile_fits(Sm90Tile::kT16H32s1TmaX, k, dev.device);
    const bool tw32 = h32 && cuda::sm90_tile_fits(Sm90Tile::kT16H32s1TmaW, k, dev.device);
    // At H > 32, where T16H32s1TmaX's grid no longer fits twice (with a static weight: from two
    // thirds of the resident clusters on): 32 tokens a tile, chunks by TMA, while its grid (half
    // the clusters, one CTA per SM) runs in one round with a cluster to spare. Each CTA pulls
    // 115 KB instead of 86, but all CTAs together pull a third less through L2, which bounds the
    // 16-token tiles' loads there (version 65's sweep, weight from HBM: DeepSeek T = 120 / 128 /
    // 160 / 192 / 224 3.71 / 3.74 / 4.03 / 4.21 / 4.39 us against 3.97 / 4.00 / 4.27 / 4.62 / 4.83
    // for T16H32s1TmaX and 4.15 / 4.16 / 4.35 / 4.54 / 4.56 for T64H32WsX2, at T = 112 behind,
    // 3.67 against 3.29; static T = 160 / 192 / 224 3.48 / 3.79 / 4.06 against 3.58 / 4.01 / 4.36
    // and 4.30 / 4.54 / 4.56, at T = 144 behind, 3.44 against 3.38; at T = 256, 16 clusters, two
    // rounds: 5.94 against 4.71 for T64H32WsX2). Not at H <= 32: at GLM's shape it was behind at
    // every T (T = 256: 3.59 against 3.45).
    if (k.H > 32 && cuda::sm90_tile_fits(Sm90Tile::kT32H32s1TmaX, k, dev.device)) {
      const std::int64_t clusters = ((k.H + 31) / 32) * ((k.T + 31) / 32);
      const int tx_max = cuda::sm90_tile_max_clusters(Sm90Tile::kT16H32s1TmaX, k, dev.device);
      const bool crowded = k.static_weight ? 3 * need32 >= 2 * tx_max : 2 * need32 > tx_max;
      if (crowded && clusters < cuda::sm90_tile_max_clusters(Sm90Tile::kT32H32s1TmaX, k, dev.device)) {
        return Sm90Tile::kT32H32s1TmaX;
      }
    }
    if (tx32 && need32 >= 8 && 2 * need32 <= cuda::sm90_tile_max_clusters(Sm90Tile::kT16H32s1TmaX, k, dev.device) + 2) {
      return Sm90Tile::kT16H32s1TmaX;
    }
    if (tw32 && need32 >= 8 && 2 * need32 <= cuda::sm90_tile_max_clusters(Sm90Tile::kT16H32s1TmaW, k, dev.device)) {
      return Sm90Tile::kT16H32s1TmaW;
    }
    // A static weight: the TMA-weight twin up to 16 clusters (DeepSeek T = 128 3.58 against 3.73
    // us, GLM T = 256 3.41 against 3.55), T16H32s1 to 24, then the mid tiles' small grid (DeepSeek
    // T = 224 / 240: T64H32WsX2 4.56 / 4.64 against 4.79 / 5.52).
    // The chunk-by-TMA twin as far as T16H32s1 goes (version 59's sweep: DeepSeek T = 128 / 192 3.40 /
    // 4.14 us against 3.56 / 4.44 for T16H32s1TmaW, 4.51 for T64H32WsX2 at 192; GLM T = 256 3.23
    // against 3.44).
    if (k.static_weight && h32) {
      if (tx32 && 5 * need32 <= 4 * max32) return Sm90Tile::kT16H32s1TmaX;
      if (tw32 && need32 <= 16) return Sm90Tile::kT16H32s1TmaW;
      return 5 * need32 <= 4 * max32 ? Sm90Tile::kT16H32s1 : mid(Sm90Tile::kT16H32s1);
    }
    if (2 * need16 <= three) return Sm90Tile::kT16H16s1;
    // T16H32s1's grid too large to fit twice: a mid tile's small grid first (version 58's sweep,
    // weight from HBM: T64H32WsX2 at DeepSeek T = 128 / 160 / 192 / 224 4.08 / 4.36 / 4.50 / 4.60
    // us against 4.51 / 4.80 / 5.10 / 5.44 for T16H32s1; GLM T = 256 3.72 against 4.06). Version
    // 42 had it the other way (DeepSeek T = 128 5.10 against 4.59): the x2 tiles then paid ~1.3 us
    // for a cold weight, 0.0-0.3 us at T <= 256 in version 58's sweeps (versions 46-51 reworked
    // their start and loads; which change took it away was not isolated).
    if (h32 && 2 * need32 > max32) return mid(Sm90Tile::kT16H32s1);
    if (h32) return Sm90Tile::kT16H32s1;
    if (need16 <= two) return Sm90Tile::kT16H16;
    return need16 <= three ? Sm90Tile::kT16H16s1 : otherwise();
  };
  // The smallest T (H = 64: T <= 16, H <= 32: T <= 32): 8 heads per CTA, the weight slice by TMA in
  // one box (version 58's sweep, weight from HBM: DeepSeek T = 1 / 8 / 16 2.02 / 2.14 / 2.31 us
  // against 2.08 / 2.27 for T16H8b and 2.49 for T16H8; GLM T = 1 / 32 1.91 / 2.16 against 1.93 for
  // T16H8b and 2.23 for T16H8); from T = 9 on its twin taking x and the weight chunk by chunk
  // (version 59's sweep: DeepSeek T = 16 2.06 against 2.15 us; GLM T = 16 / 32 even, 1.94 / 2.03
  // against 1.93 / 2.01; at T = 1 / 8 behind, 2.09 / 2.01 against 1.83 / 1.96). Where its box does
  // not apply (G % 64 != 0): the bulk-copy T16H8b at
  // T <= 8 (sweep 36: DeepSeek T = 1 2.01 against 2.20 us for T16H8, T = 8 2.18 against 2.28, at
  // T = 16 behind, 2.39 against 2.33), T16H8 beyond and where neither applies (K > 8192), as the
  // fallbacks below provide.
  // A static weight at H > 16 takes the decode rule from T = 1 on (version 45, sweep with the
  // weight from HBM: DeepSeek T = 16 T16H16 2.14 against 2.25 us for T16H8, T = 1 even with
  // T16H8b, 1.93 against 1.90), and at H <= 32 up to T = 512 (GLM T = 384: T16H32s1 4.27 against
  // 4.84 for T64H32WsX2).
  // All-head prefill tiles at H = 64 beyond the mid-T tiles: 64 tokens (T64H64tma, resident
  // weight) or 128 (T128H64ws, weight streamed), by rounds. A round (every resident cluster runs one
  // tile) costs about one tile's chain of 7 waves however many clusters are busy in it (NOTES.md
  // versions 22 and 48: the last round is bound by each CTA's chain of waves, not by HBM), so a
  // grid's time is close to a + b x rounds; least-squares fit of the sweep with the weight from HBM
  // (version 46, T = 1024-16384, residuals up to 1.1 us): T64H64tma 3.8 + 3.7 r (2.9 + 3.7 r with a
  // static weight, loaded before the previous kernel ends), T128H64ws 3.1 + 6.8 r. It picks
  // T128H64ws at T = 3072, 5120, 7168 and from ~10000 on, T64H64tma at 2560, 4096, 6144 and 8192;
  // version 48's sweep (16-byte pushes) agrees but for 6144 (27.7 against 27.1 us; a refit changes
  // no choice) and ties at 4096 and 8192. Up to T = 2048 the fit does not hold (a CTA with two tiles
  // or fewer prefetches its whole first tile): there one round of 128-token tiles (T = 961-1920 on
  // the H200) beats two of 64 since version 48 (T = 1536 10.2 against 11.0 us, 1792 10.9 against
  // 11.8, 1024 and 1280 even or ahead), except with a static weight, which T64H64tma copies before
  // the wait (1024: 8.9 against 9.8); T = 2048 keeps T64H64tma (13.5-14.0 against 14.2).
  const auto prefill128 = [&](Sm90Tile t128, Sm90Tile t64) {
    if (!cuda::sm90_tile_fits(t128, k, dev.device) || (k.T <= 2048 && k.static_weight)) return false;
    if (!cuda::sm90_tile_fits(t64, k, dev.device)) return true;
    const auto rounds = [&](Sm90Tile tile, std::int64_t rows) {
      const std::int64_t clusters = cuda::sm90_tile_max_clusters(tile, k, dev.device);
      return static_cast<double>(((k.T + rows - 1) / rows + clusters - 1) / clusters);
    };
    if (k.T <= 2048) return rounds(t128, 128) == 1 && rounds(t64, 64) == 2;
    return 3.1 + 6.8 * rounds(t128, 128) < (k.static_weight ? 2.9 : 3.8) + 3.7 * rounds(t64, 64);
  };
  // The full-K tiles (sm90_full_k.cuh: no cluster, a CTA on every SM, each streaming the whole
  // weight from L2 beside its 64 or 32 tokens) where their grid fills whole rounds: a round is a
  // whole tile's K on every CTA (~29 us at DeepSeek's shape), so a tile left over costs a round.
  // Sweep with the weight from HBM (NOTES.md version 68), DeepSeek: T64H64Fk at T = 8192 31.4-31.6
  // against 33.7-33.8 us (T64H64tma), 8448 33.0 against 34.2, 16384 60.2-60.3 against 62.2, 16896
  // 62.3 against 63.6; even at 7680 and behind at 15360 (120 and 240 tiles on 132 SMs: 91% full),
  // at 14336 (85%) and at 65536 (8 rounds, 245.1 against 241.1 for T128H64ws). At 32768 (4 rounds)
  // the sweep had it ahead (118.1 against 119.2) but a benchmark behind (127.4 against 121.5 for
  // T128H64ws in version 65's run), hence two rounds at most; a later benchmark A/B of the two rules
  // had four rounds ahead (32768: 119.4-119.8 against 121.6), not yet validated (NOTES.md version
  // 68, lead 1). T32H64Fk in one round: T = 4096 18.6-18.7 against 19.9-20.1; in two (T = 8192)
  // 32.6-32.8, behind T64H64Fk. At H <= 32 the 64-head MMA is half padding (GLM T = 8192: 31.4
  // against 27.8 us).
  const auto full_k = [&](Sm90Tile tile, int rows, std::int64_t max_rounds) {
    if (k.H <= 32 || k.H > 64 || !cuda::sm90_tile_fits(tile, k, dev.device)) return false;
    const std::int64_t ctas = cuda::sm90_tile_max_clusters(tile, k, dev.device);
    const std::int64_t tiles = (k.T + rows - 1) / rows, rounds = (tiles + ctas - 1) / ctas;
    return rounds <= max_rounds && 100 * tiles >= 95 * rounds * ctas;
  };
  Sm90Tile order[8];
  int n = 0;
  if (k.static_weight && k.H > 16 && (k.T <= 256 || (k.H <= 32 && k.T <= 512))) {
    const bool wide = k.H <= 32 ? k.T > 256 : k.T > 128;
    order[n++] = decode([&] { return mid(wide ? Sm90Tile::kT64H32Tma : Sm90Tile::kT64H16Tma); });
  } else if (k.T <= 8) {
    order[n++] = Sm90Tile::kT16H8TmaW;
    order[n++] = Sm90Tile::kT16H8b;
  } else if (k.H <= 32) {
    if (k.T <= 32) {
      order[n++] = Sm90Tile::kT16H8TmaX;
      order[n++] = Sm90Tile::kT16H8TmaW;
      order[n++] = Sm90Tile::kT16H8;
    } else if (k.T <= 256) {
      order[n++] = decode([&] { return mid(Sm90Tile::kT64H16Tma); });
    } else {
      // Beyond the small grids of mid(), 128-token tiles (version 48, sweep with the weight from HBM:
      // T = 1024 7.5 against 7.9-8.2 us for T64H32tma, 2048 10.2 against 10.8; with a static weight
      // T = 768 5.6 against 5.9).
      order[n++] = mid(Sm90Tile::kT128H32Tma);
      order[n++] = Sm90Tile::kT64H32Tma;
    }
  } else {
    if (k.T <= 16) {
      order[n++] = Sm90Tile::kT16H8TmaX;
      order[n++] = Sm90Tile::kT16H8TmaW;
      order[n++] = Sm90Tile::kT16H8;
    } else if (k.T <= 256) {
      order[n++] = decode([&] { return mid(k.T <= 128 ? Sm90Tile::kT64H16Tma : Sm90Tile::kT64H32Tma); });
    } else if (full_k(Sm90Tile::kT64H64Fk, 64, 2)) {
      order[n++] = Sm90Tile::kT64H64Fk;
    } else if (full_k(Sm90Tile::kT32H64Fk, 32, 1)) {
      order[n++] = Sm90Tile::kT32H64Fk;
    } else if (!prefill128(Sm90Tile::kT128H64Ws, Sm90Tile::kT64H64Tma)) {
      order[n++] = mid(Sm90Tile::kT64H64Tma);
      if (order[n - 1] != Sm90Tile::kT64H64Tma) order[n++] = Sm90Tile::kT64H64Tma;
      order[n++] = Sm90Tile::kT64H32Tma;
    } else {
      order[n++] = Sm90Tile::kT128H64Ws;
      order[n++] = Sm90Tile::kT64H64Tma;
      order[n++] = Sm90Tile::kT64H32Tma;
    }
  }
  // Fallbacks, in order: where the weight slice is too large for the tiles above (K beyond ~8k at
  // H = 64) the smaller head tiles still fit; where K % 1024 != 0 no TMA tile applies (see fits())
  // and the mma.sync tiles take every T; T16H8 has the smallest footprint and fits whenever any
  // tile does.
  if (order[n - 1] != Sm90Tile::kT64H16Tma) order[n++] = Sm90Tile::kT64H16Tma;
  if (k.T > 96) order[n++] = Sm90Tile::kT32H32;
  order[n++] = Sm90Tile::kT16H8;
  for (int i = 0; i < n; ++i) {
    if (cuda::sm90_tile_fits(order[i], k, dev.device)) {
      c.sm90 = true;
      c.tile = order[i];
      c.reason = "sm_90a";
      return c;
    }
  }
  return c.reason = "weight slice does not fit in shared memory", c;
}

std::string describe(const Choice& c, const KernelParams& k) {
  std::ostringstream os;
  if (c.sm90) {
    os << cuda::sm90_tile_name(c.tile);
  } else {
    os << "generic_mma<T64,H32," << (cuda::generic_vector_loads_ok(k) ? "vec16" : "scalar") << ">";
  }
  os << " for T=" << k.T << " H=" << k.H << " K=" << k.K << " (" << c.reason << ")";
  return os.str();
}

}  // namespace

bool cuda_backend_available() { return true; }

void logits_head_gate_cuda(const LogitsHeadGateParams& p, cudaStream_t stream, CudaPath path) {
  check_params(p);
  if (p.T == 0) return;
  const DeviceInfo dev = current_device();
  check_device_pointer(p.x, "x", dev.device);
  check_device_pointer(p.weight, "weight", dev.device);
  check_device_pointer(p.q_scale, "q_scale", dev.device);
  check_device_pointer(p.out, "out", dev.device);
  const KernelParams k = to_kernel_params(p);
  const Choice c = choose(k, dev, path);
  if (c.sm90) {
    cuda::launch_sm90(c.tile, k, dev.device, stream);
  } else {
    cuda::launch_generic(k, stream);
  }
}

std::string describe_cuda_dispatch(const LogitsHeadGateParams& p, CudaPath path) {
  check_params(p);
  const KernelParams k = to_kernel_params(p);
  if (p.T == 0) return "nothing to launch (T = 0)";
  return describe(choose(k, current_device(), path), k);
}

}  // namespace dsa_indexer
