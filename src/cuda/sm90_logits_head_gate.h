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
enum class Sm90Tile {
  kT16H8, kT16H8b, kT16H16, kT16H16s1, kT16H32s1, kT32H32, kT64H16Tma, kT64H32Tma, kT64H64Tma, kT128H32Tma,
  kT128H64Ws, kT64H64WsX2, kT64H32WsX2
};
constexpr Sm90Tile kAllSm90Tiles[] = {Sm90Tile::kT16H8,      Sm90Tile::kT16H8b,    Sm90Tile::kT16H16,
                                      Sm90Tile::kT16H16s1,   Sm90Tile::kT16H32s1,  Sm90Tile::kT32H32,
                                      Sm90Tile::kT64H16Tma,  Sm90Tile::kT64H32Tma, Sm90Tile::kT64H64Tma,
                                      Sm90Tile::kT128H32Tma, Sm90Tile::kT128H64Ws,
                                      Sm90Tile::kT64H64WsX2, Sm90Tile::kT64H32WsX2};

// Whether the tile's shared memory (resident weight slice + x ring + reduction buffer) fits.
bool sm90_tile_fits(Sm90Tile tile, const KernelParams& p, int device);
// Clusters of the tile that can be resident on the device at once (an occupancy query, cached).
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
template <> const Sm90TileOps& sm90_tile_ops<Sm90Tile::kT16H8>();
template <> const Sm90TileOps& sm90_tile_ops<Sm90Tile::kT16H8b>();
template <> const Sm90TileOps& sm90_tile_ops<Sm90Tile::kT16H16>();
template <> const Sm90TileOps& sm90_tile_ops<Sm90Tile::kT16H16s1>();
template <> const Sm90TileOps& sm90_tile_ops<Sm90Tile::kT16H32s1>();
template <> const Sm90TileOps& sm90_tile_ops<Sm90Tile::kT32H32>();
template <> const Sm90TileOps& sm90_tile_ops<Sm90Tile::kT64H16Tma>();
template <> const Sm90TileOps& sm90_tile_ops<Sm90Tile::kT64H32Tma>();
template <> const Sm90TileOps& sm90_tile_ops<Sm90Tile::kT64H64Tma>();
template <> const Sm90TileOps& sm90_tile_ops<Sm90Tile::kT128H32Tma>();
template <> const Sm90TileOps& sm90_tile_ops<Sm90Tile::kT128H64Ws>();
template <> const Sm90TileOps& sm90_tile_ops<Sm90Tile::kT64H64WsX2>();
template <> const Sm90TileOps& sm90_tile_ops<Sm90Tile::kT64H32WsX2>();

}  // namespace dsa_indexer::cuda
