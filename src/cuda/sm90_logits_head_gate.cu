// sm_90a kernel of the head gate: a cluster of 8 CTAs splits K into the 8 groups of
// kernel_params.h; each CTA keeps its group's slice of the weight resident in shared memory,
// streams the matching columns of x through a cp.async ring, and the cluster sums the 8 group
// partials through distributed shared memory in rank order. Persistent over token tiles.
// The same code serves decode (16-token tiles, few heads per CTA, every chunk of a group in flight
// at once) and prefill (64/128-token tiles, all heads resident), so results are bitwise equal for
// every T: see NOTES.md beside this file.
#include <cuda_runtime.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <tuple>

#include "common/check.h"
#include "cuda/cuda_check.h"
#include "cuda/mma_sm80.cuh"
#include "cuda/sm90_logits_head_gate.h"

namespace dsa_indexer::cuda {
namespace {

constexpr int kClusterSize = kNumKGroups;

// Only the sm_90a pass compiles the body: clusters, griddepcontrol and the tile sizes are tuned for
// Hopper; the dispatcher never launches this kernel elsewhere.
#if !defined(__CUDA_ARCH__) || (__CUDA_ARCH__ == 900)
#define DSA_SM90_BODY 1
#endif

__device__ __forceinline__ unsigned cluster_ctarank() {
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}
__device__ __forceinline__ void cluster_arrive() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() {
  asm volatile("barrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}
__device__ __forceinline__ float ld_dsmem(std::uint32_t local_addr, unsigned rank) {
  std::uint32_t remote;
  float v;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(local_addr), "r"(rank));
  asm volatile("ld.shared::cluster.f32 %0, [%1];\n" : "=f"(v) : "r"(remote) : "memory");
  return v;
}

template <class Cfg>
__global__ void __launch_bounds__(Cfg::kThreads, 1) sm90_logits_head_gate_kernel(const KernelParams p) {
#ifdef DSA_SM90_BODY
  constexpr int kBlockT = Cfg::kBlockT, kBlockH = Cfg::kBlockH, kCIF = Cfg::kChunksInFlight;
  constexpr int kSlots = Cfg::kSlots, kThreads = Cfg::kThreads;
  constexpr int kWarpRows = kBlockT / Cfg::kWarpsT, kWarpHeads = kBlockH / Cfg::kWarpsH;
  constexpr int kMT = kWarpRows / 16, kNT = kWarpHeads / 8;
  constexpr int kRedPitch = kBlockH + 8;  // floats; +8 keeps the float2 stores conflict-free
  constexpr int kVecs = kRowBytes / 16;
  static_assert(kSlots >= 2, "the ring needs two slots");

  extern __shared__ __align__(128) unsigned char smem[];
  const int nchunks = (p.G + kChunk - 1) / kChunk;
  unsigned char* w_smem = smem;                                    // [nchunks][kBlockH] rows
  unsigned char* x_smem = w_smem + nchunks * kBlockH * kRowBytes;  // [kSlots][kCIF][kBlockT] rows
  float* red = reinterpret_cast<float*>(x_smem + kSlots * kCIF * kBlockT * kRowBytes);

  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const unsigned rank = cluster_ctarank();
  const int worker = blockIdx.x / kClusterSize;
  const int num_workers = gridDim.x / kClusterSize;
  const int h0 = blockIdx.y * kBlockH;
  const std::int64_t k_base = static_cast<std::int64_t>(rank) * p.G;  // this CTA's group
  const std::int64_t num_tiles = (p.T + kBlockT - 1) / kBlockT;
  const int my_tiles = static_cast<int>((num_tiles - worker + num_workers - 1) / num_workers);
  const int waves_per_tile = (nchunks + kCIF - 1) / kCIF;
  const int num_waves = my_tiles * waves_per_tile;
  const int warp_row0 = (warp / Cfg::kWarpsH) * kWarpRows;
  const int warp_head0 = (warp % Cfg::kWarpsH) * kWarpHeads;

  // Programmatic dependent launch: let the next kernel start its prologue now, and wait for the
  // previous one before the first global read (x, weight or q_scale may be its output).
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  asm volatile("griddepcontrol.wait;\n" ::: "memory");

  // The weight slice: heads [h0, h0 + kBlockH) x this group's columns, loaded once.
  {
    const std::uint32_t base = smem_addr(w_smem);
    for (int i = tid; i < nchunks * kBlockH * kVecs; i += kThreads) {
      const int v = i % kVecs, row = (i / kVecs) % kBlockH, chunk = i / (kVecs * kBlockH);
      const int col = chunk * kChunk + v * 8;
      if (h0 + row < p.H && col < p.G) {
        cp_async_16(base + (chunk * kBlockH) * kRowBytes + swizzled_offset(row, v),
                    p.w + static_cast<std::int64_t>(h0 + row) * p.ldw + k_base + col, 16);
      }
    }
  }
  // Rows of x past T are never loaded: MMA rows are independent and those outputs are not stored.
  const auto load_wave = [&](int wave_idx) {
    const int tile_i = wave_idx / waves_per_tile;
    const int chunk0 = (wave_idx % waves_per_tile) * kCIF;
    const std::int64_t t0 = (worker + static_cast<std::int64_t>(tile_i) * num_workers) * kBlockT;
    const std::uint32_t slot = smem_addr(x_smem) + (wave_idx % kSlots) * (kCIF * kBlockT * kRowBytes);
    for (int i = tid; i < kCIF * kBlockT * kVecs; i += kThreads) {
      const int v = i % kVecs, row = (i / kVecs) % kBlockT, c = i / (kVecs * kBlockT);
      const int col = (chunk0 + c) * kChunk + v * 8;
      if (t0 + row < p.T && chunk0 + c < nchunks && col < p.G) {
        cp_async_16(slot + (c * kBlockT) * kRowBytes + swizzled_offset(row, v),
                    p.x + (t0 + row) * p.ldx + k_base + col, 16);
      }
    }
  };
#pragma unroll 1
  for (int s = 0; s < kSlots - 1; ++s) {
    if (s < num_waves) load_wave(s);
    cp_async_commit();  // one group per slot, empty or not, keeps the wait counts uniform
  }

  float q[kMT][kNT][4];
#pragma unroll 1
  for (int s = 0; s < num_waves; ++s) {
    cp_async_wait<kSlots - 2>();
    __syncthreads();
    const int tile_i = s / waves_per_tile;
    const int wave_in_tile = s % waves_per_tile;
    const int chunk0 = wave_in_tile * kCIF;
    if (wave_in_tile == 0) zero(q);

    // The chunks of the wave run side by side (independent MMA chains, so decode latency is
    // one chain of 8 MMAs), then join the group sum in chunk order.
    float acc[kCIF][kMT][kNT][4];
#pragma unroll
    for (int c = 0; c < kCIF; ++c) zero(acc[c]);
    const std::uint32_t slot = smem_addr(x_smem) + (s % kSlots) * (kCIF * kBlockT * kRowBytes);
#pragma unroll
    for (int step = 0; step < kChunk / kMmaK; ++step) {
#pragma unroll
      for (int c = 0; c < kCIF; ++c) {
        const int chunk = chunk0 + c;
        if (chunk < nchunks && (chunk * kChunk + step * kMmaK) < p.G) {
          warp_mma_step<kMT, kNT>(acc[c], slot + c * kBlockT * kRowBytes, warp_row0,
                                  smem_addr(w_smem) + chunk * kBlockH * kRowBytes, warp_head0,
                                  step, lane);
        }
      }
    }
#pragma unroll
    for (int c = 0; c < kCIF; ++c) {
      if (chunk0 + c < nchunks) accumulate(q, acc[c]);
    }

    // Refill the slot everyone finished reading in iteration s - 1.
    if (s + kSlots - 1 < num_waves) load_wave(s + kSlots - 1);
    cp_async_commit();

    if (wave_in_tile == waves_per_tile - 1) {
      // Tile done: publish the group sum, then reduce this rank's share of the tile across the
      // cluster in rank order (= group order).
      if (tile_i > 0) cluster_wait();  // peers finished reading the previous tile's partials
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            const int row = warp_row0 + mt * 16 + lane / 4 + half * 8;
            const int col = warp_head0 + nt * 8 + 2 * (lane % 4);
            *reinterpret_cast<float2*>(red + row * kRedPitch + col) =
                make_float2(q[mt][nt][2 * half], q[mt][nt][2 * half + 1]);
          }
      cluster_arrive();
      cluster_wait();
      const std::int64_t t0 = (worker + static_cast<std::int64_t>(tile_i) * num_workers) * kBlockT;
      constexpr int kPerRank = kBlockT * kBlockH / kClusterSize;
      for (int e = static_cast<int>(rank) * kPerRank + tid; e < (static_cast<int>(rank) + 1) * kPerRank;
           e += kThreads) {
        const int row = e / kBlockH, col = e % kBlockH;
        const std::int64_t t = t0 + row;
        const int h = h0 + col;
        if (t < p.T && h < p.H) {
          const std::uint32_t addr = smem_addr(red + row * kRedPitch + col);
          float part[kClusterSize];
#pragma unroll
          for (int r = 0; r < kClusterSize; ++r) part[r] = ld_dsmem(addr, r);
          float total = 0.f;
#pragma unroll
          for (int r = 0; r < kClusterSize; ++r) total = __fadd_rn(total, part[r]);
          const float qs = p.q_scale[t * p.qs_t + h * p.qs_h];
          p.out[t * p.out_t + static_cast<std::int64_t>(h) * p.out_h] =
              scale_output(total, p.n_heads_inv_sqrt, qs, p.softmax_scale);
        }
      }
      cluster_arrive();  // my reads of the peers' partials are done
    }
  }
  // No CTA may exit while a peer can still read its shared memory.
  if (num_waves > 0) cluster_wait();
#endif
}

template <class Cfg>
std::size_t smem_bytes(const KernelParams& p) {
  const int nchunks = (p.G + kChunk - 1) / kChunk;
  return static_cast<std::size_t>(nchunks) * Cfg::kBlockH * kRowBytes +
         static_cast<std::size_t>(Cfg::kSlots) * Cfg::kChunksInFlight * Cfg::kBlockT * kRowBytes +
         static_cast<std::size_t>(Cfg::kBlockT) * (Cfg::kBlockH + 8) * sizeof(float);
}

int device_max_smem(int device) {
  static std::mutex mu;
  static std::map<int, int> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(device);
  if (it != cache.end()) return it->second;
  int v = 0;
  DSA_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  cache[device] = v;
  return v;
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
  cfg.blockDim = dim3(Cfg::kThreads);
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

template <class Cfg>
bool fits(const KernelParams& p, int device) {
  return smem_bytes<Cfg>(p) <= static_cast<std::size_t>(device_max_smem(device));
}

template <class Cfg>
void launch(const KernelParams& p, int device, cudaStream_t stream) {
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
  DSA_CUDA_CHECK(cudaLaunchKernelEx(&cfg, sm90_logits_head_gate_kernel<Cfg>, p));
}

template <int kT, int kH, int kWT, int kWH, int kCIF_, int kSlots_>
struct Config {
  static constexpr int kBlockT = kT, kBlockH = kH, kWarpsT = kWT, kWarpsH = kWH;
  static constexpr int kChunksInFlight = kCIF_, kSlots = kSlots_;
  static constexpr int kThreads = 32 * kWT * kWH;
  static_assert(kT % (16 * kWT) == 0 && kH % (8 * kWH) == 0, "warp tiles are m16 x n8 multiples");
  static std::string name() {
    return "sm90_cluster8<T" + std::to_string(kT) + ",H" + std::to_string(kH) + ",warps" +
           std::to_string(kWT) + "x" + std::to_string(kWH) + ",chunks_in_flight" +
           std::to_string(kCIF_) + ",slots" + std::to_string(kSlots_) + ">";
  }
};

// The instantiated tiles; Sm90Tile in the header names them in this order.
using ConfigT16H8 = Config<16, 8, 1, 1, 8, 2>;
using ConfigT16H16 = Config<16, 16, 1, 2, 8, 2>;
using ConfigT32H32 = Config<32, 32, 2, 2, 4, 2>;
using ConfigT64H64 = Config<64, 64, 4, 1, 1, 4>;
using ConfigT64H32 = Config<64, 32, 4, 1, 1, 4>;
using ConfigT128H32 = Config<128, 32, 8, 1, 1, 3>;

template <class F>
auto visit(Sm90Tile tile, F&& f) {
  switch (tile) {
    case Sm90Tile::kT16H8: return f(ConfigT16H8{});
    case Sm90Tile::kT16H16: return f(ConfigT16H16{});
    case Sm90Tile::kT32H32: return f(ConfigT32H32{});
    case Sm90Tile::kT64H64: return f(ConfigT64H64{});
    case Sm90Tile::kT64H32: return f(ConfigT64H32{});
    case Sm90Tile::kT128H32: return f(ConfigT128H32{});
  }
  DSA_CHECK(false, "unknown sm90 tile " << static_cast<int>(tile));
}

}  // namespace

bool sm90_tile_fits(Sm90Tile tile, const KernelParams& p, int device) {
  return visit(tile, [&](auto cfg) { return fits<decltype(cfg)>(p, device); });
}

std::string sm90_tile_name(Sm90Tile tile) {
  return visit(tile, [](auto cfg) { return decltype(cfg)::name(); });
}

void launch_sm90(Sm90Tile tile, const KernelParams& p, int device, cudaStream_t stream) {
  visit(tile, [&](auto cfg) { launch<decltype(cfg)>(p, device, stream); });
}

}  // namespace dsa_indexer::cuda
