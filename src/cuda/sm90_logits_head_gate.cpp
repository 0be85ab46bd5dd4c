// The sm_90a tiles' common entry points (sm90_logits_head_gate.h): each goes to the tile's own
// translation unit (sm90_tile.cu.in), and the host helpers every tile shares.
#include "cuda/sm90_logits_head_gate.h"

#include <cuda.h>  // CUtensorMap and its enums (header only: the driver entry point is fetched at run time)
#include <cudaTypedefs.h>

#include <map>
#include <mutex>

#include "common/check.h"
#include "cuda/cuda_check.h"

namespace dsa_indexer::cuda {
namespace {

const Sm90TileOps& ops(Sm90Tile tile) {
  switch (tile) {
#define DSA_SM90_TILE_CASE(name) \
  case Sm90Tile::k##name:        \
    return sm90_tile_ops<Sm90Tile::k##name>();
    DSA_SM90_TILES(DSA_SM90_TILE_CASE)
#undef DSA_SM90_TILE_CASE
  }
  DSA_CHECK(false, "unknown sm90 tile " << static_cast<int>(tile));
}

}  // namespace

bool sm90_tile_fits(Sm90Tile tile, const KernelParams& p, int device) { return ops(tile).fits(p, device); }

int sm90_tile_max_clusters(Sm90Tile tile, const KernelParams& p, int device) {
  return ops(tile).max_clusters(p, device);
}

std::string sm90_tile_name(Sm90Tile tile) { return ops(tile).name(); }

std::string sm90_tile_label(Sm90Tile tile) { return ops(tile).label(); }

void launch_sm90(Sm90Tile tile, const KernelParams& p, int device, cudaStream_t stream) {
  ops(tile).launch(p, device, stream);
}

namespace {
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q{};
    DSA_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q));
    DSA_CHECK(q == cudaDriverEntryPointSuccess && fn != nullptr, "cuTensorMapEncodeTiled is not available");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}
// bf16, 128-byte swizzle, every element of the box (rank 2 or 3).
CUtensorMap encode_tensor_map(const std::uint16_t* base, cuuint32_t rank, const cuuint64_t* dims,
                              const cuuint64_t* strides, const cuuint32_t* box) {
  const cuuint32_t elem_strides[3] = {1, 1, 1};
  CUtensorMap map;
  const CUresult r =
      tensor_map_encoder()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, rank, const_cast<std::uint16_t*>(base), dims,
                           strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                           CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  DSA_CHECK(r == CUDA_SUCCESS, "cuTensorMapEncodeTiled failed with CUresult " << static_cast<int>(r));
  return map;
}
}  // namespace

// The two maps of sm90_kernel.cuh: a 2-D one over a bf16 [rows, K] matrix (boxes of 64 columns x
// box_rows rows), and the same matrix seen as 64 columns x rows x K / 64 blocks.
CUtensorMap make_tensor_map(const std::uint16_t* base, int K, std::int64_t rows, std::int64_t ld, int box_rows) {
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(K), static_cast<cuuint64_t>(rows)};
  const cuuint64_t strides[1] = {static_cast<cuuint64_t>(ld) * 2};
  const cuuint32_t box[2] = {64, static_cast<cuuint32_t>(box_rows)};
  return encode_tensor_map(base, 2, dims, strides, box);
}

CUtensorMap make_block_tensor_map(const std::uint16_t* base, int K, std::int64_t rows, std::int64_t ld, int box_rows,
                                  int box_blocks) {
  DSA_CHECK(K % 64 == 0, "a block tensor map needs K % 64 == 0, got K = " << K);
  // Innermost first: the 64 columns of a block, the rows, the K / 64 blocks of a row, 128 bytes apart.
  const cuuint64_t dims[3] = {64, static_cast<cuuint64_t>(rows), static_cast<cuuint64_t>(K / 64)};
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(ld) * 2, 128};
  const cuuint32_t box[3] = {64, static_cast<cuuint32_t>(box_rows), static_cast<cuuint32_t>(box_blocks)};
  return encode_tensor_map(base, 3, dims, strides, box);
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

}  // namespace dsa_indexer::cuda
