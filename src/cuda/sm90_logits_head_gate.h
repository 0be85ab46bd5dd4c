// Launcher of the sm_90a cluster kernel (sm90_kernel.cuh) and the tiles it is built for.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "cuda/kernel_params.h"

namespace dsa_indexer::cuda {

// Token tile x head tile of one CTA; every tile computes bitwise the same result (same K groups,
// chunks and MMA), they differ only in how the work is spread over the GPU.
// kT16H8b is kT16H8 loading whole rows of the K group with 1-D bulk copies instead of cp.async
// (one wave per tile only: K <= 8192); kT16H16s1 and kT16H32s1 have a one-slot ring, small enough
// for three and two CTAs per SM; kT128H64Ws streams the weight through the ring with x instead of
// keeping it resident, and so do kT64H64WsX2 and kT64H32WsX2, small enough for two CTAs per SM.
// kT16H8TmaW, kT16H16TmaW and kT16H32s1TmaW are kT16H8, kT16H16 and kT16H32s1 taking their weight
// slice by TMA (one 3-D box of the whole K group) instead of cp.async; kT16H8TmaX, kT16H16TmaX and
// kT16H32s1TmaX take x and the weight by TMA, one box per chunk, each warp waiting for its own
// chunk only (K <= 8192); kT32H32s1TmaX is the last with 32-token tiles.
// kT64H64Fk and kT32H64Fk are the full-K tiles (sm90_full_k.cuh): no cluster, one CTA computes 64
// heads x 64 (32) tokens over the whole of K, streaming the weight beside x.
// The instantiated tiles, one X(name) each, the Sm90Tile enumerator without its k. The enum, the
// list of all tiles, the per-tile entry points and their dispatch (sm90_logits_head_gate.cpp) are
// generated from it, and CMakeLists.txt reads it to compile one translation unit per tile.
#define DSA_SM90_TILES(X)                                                                                    \
  X(T16H8) X(T16H8b) X(T16H8TmaW) X(T16H16) X(T16H16TmaW) X(T16H16s1) X(T16H32s1) X(T16H32s1TmaW)         \
  X(T16H8TmaX) X(T16H16TmaX) X(T16H32s1TmaX) X(T32H32s1TmaX)                                            \
  X(T32H32) X(T64H16Tma) X(T64H32Tma) X(T64H64Tma) X(T128H32Tma) X(T128H64Ws) X(T64H64WsX2) X(T64H32WsX2) \
  X(T64H64Fk) X(T32H64Fk)

#define DSA_SM90_TILE_ENUMERATOR(name) k##name,
enum class Sm90Tile { DSA_SM90_TILES(DSA_SM90_TILE_ENUMERATOR) };
#undef DSA_SM90_TILE_ENUMERATOR
#define DSA_SM90_TILE_VALUE(name) Sm90Tile::k##name,
constexpr Sm90Tile kAllSm90Tiles[] = {DSA_SM90_TILES(DSA_SM90_TILE_VALUE)};
#undef DSA_SM90_TILE_VALUE

// Whether the tile's shared memory (resident weight slice + x ring + reduction buffer) fits.
bool sm90_tile_fits(Sm90Tile tile, const KernelParams& p, int device);
// Clusters of the tile that can be resident on the device at once (an occupancy query, cached);
// a full-K tile's cluster is one CTA.
int sm90_tile_max_clusters(Sm90Tile tile, const KernelParams& p, int device);
std::string sm90_tile_name(Sm90Tile tile);
// Short label for tables: "T64H64tma" and the like.
std::string sm90_tile_label(Sm90Tile tile);

// Enqueues the kernel; preconditions (checked by the dispatcher): compute capability 9.0,
// K % 128 == 0, x and weight 16-byte aligned with row strides multiple of 8, T >= 1.
void launch_sm90(Sm90Tile tile, const KernelParams& p, int device, cudaStream_t stream);

// One tile's entry points. Each tile is compiled in a translation unit of its own (sm90_tile.cu.in,
// one CUDA module per tile, so that lazy loading brings in only the tiles a process uses), which
// defines its specialization of sm90_tile_ops; the functions above go through them.
struct Sm90TileOps {
  bool (*fits)(const KernelParams& p, int device);
  int (*max_clusters)(const KernelParams& p, int device);
  void (*launch)(const KernelParams& p, int device, cudaStream_t stream);
  std::string (*name)();
  std::string (*label)();
};
template <Sm90Tile kTile>
const Sm90TileOps& sm90_tile_ops();
#define DSA_SM90_TILE_OPS_DECL(name) \
  template <>                         \
  const Sm90TileOps& sm90_tile_ops<Sm90Tile::k##name>();
DSA_SM90_TILES(DSA_SM90_TILE_OPS_DECL)
#undef DSA_SM90_TILE_OPS_DECL

}  // namespace dsa_indexer::cuda
