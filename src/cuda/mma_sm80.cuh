// Warp-level building blocks shared by the portable and sm_90a kernels: bf16 m16n8k16 MMA with fp32
// accumulation, ldmatrix from swizzled 128-element-wide shared tiles, cp.async, and the epilogue.
// Both kernels use exactly these, which is what makes their results bitwise equal.
#pragma once

#include <cstdint>

#include "cuda/kernel_params.h"

namespace dsa_indexer::cuda {

// A shared tile row holds one chunk: 128 bf16 = 256 bytes = 16 vectors of 16 bytes. Vector c of
// row r is stored at c ^ (r & 7), so the 8 rows one ldmatrix phase reads hit 8 distinct bank
// groups (a plain 256-byte pitch would put all 8 in the same banks).
constexpr int kRowBytes = kChunk * 2;

__device__ __forceinline__ std::uint32_t swizzled_offset(int row, int vec) {
  return static_cast<std::uint32_t>(row * kRowBytes + ((vec ^ (row & 7)) << 4));
}

__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

// d = a * b + d, bf16 inputs, fp32 accumulators (row.col: A rows = tokens, B columns = heads).
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const std::uint32_t (&a)[4],
                                               std::uint32_t b0, std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x2(std::uint32_t& r0, std::uint32_t& r1, std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n"
               : "=r"(r0), "=r"(r1)
               : "r"(addr));
}

// A fragment (16 tokens x 16 k) of a swizzled tile whose rows are tokens; row0 = first token row,
// kstep = which 16-wide step of the 128-wide chunk.
__device__ __forceinline__ void load_a_frag(std::uint32_t (&a)[4], std::uint32_t tile, int row0,
                                            int kstep, int lane) {
  const int row = row0 + (lane & 7) + ((lane >> 3) & 1) * 8;
  const int vec = kstep * 2 + (lane >> 4);
  ldmatrix_x4(a, tile + swizzled_offset(row, vec));
}

// B fragments of two n8 tiles (16 heads x 16 k) of a swizzled tile whose rows are heads:
// b[0], b[1] for heads row0..row0+7, b[2], b[3] for heads row0+8..row0+15.
__device__ __forceinline__ void load_b_frag_x2(std::uint32_t (&b)[4], std::uint32_t tile, int row0,
                                               int kstep, int lane) {
  const int row = row0 + (lane & 7) + (lane >> 4) * 8;
  const int vec = kstep * 2 + ((lane >> 3) & 1);
  ldmatrix_x4(b, tile + swizzled_offset(row, vec));
}

// B fragment of one n8 tile (8 heads x 16 k).
__device__ __forceinline__ void load_b_frag_x1(std::uint32_t& b0, std::uint32_t& b1,
                                               std::uint32_t tile, int row0, int kstep, int lane) {
  const int row = row0 + (lane & 7);
  const int vec = kstep * 2 + ((lane >> 3) & 1);
  ldmatrix_x2(b0, b1, tile + swizzled_offset(row, vec));
}

// Warp tile of kMT x kNT MMA tiles: one k16 step, A and B from swizzled shared tiles.
template <int kMT, int kNT>
__device__ __forceinline__ void warp_mma_step(float (&acc)[kMT][kNT][4], std::uint32_t a_tile,
                                              int a_row0, std::uint32_t b_tile, int b_row0,
                                              int kstep, int lane) {
  std::uint32_t a[kMT][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) load_a_frag(a[mt], a_tile, a_row0 + mt * 16, kstep, lane);
  if constexpr (kNT == 1) {
    std::uint32_t b0, b1;
    load_b_frag_x1(b0, b1, b_tile, b_row0, kstep, lane);
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) mma_bf16_16816(acc[mt][0], a[mt], b0, b1);
  } else {
    static_assert(kNT % 2 == 0, "kNT must be 1 or even");
#pragma unroll
    for (int np = 0; np < kNT / 2; ++np) {
      std::uint32_t b[4];
      load_b_frag_x2(b, b_tile, b_row0 + np * 16, kstep, lane);
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        mma_bf16_16816(acc[mt][2 * np], a[mt], b[0], b[1]);
        mma_bf16_16816(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

template <int kMT, int kNT>
__device__ __forceinline__ void zero(float (&acc)[kMT][kNT][4]);

// The sm_90a kernel stores a 128-wide chunk of kRows rows as two 64-column halves, each
// [kRows][128 bytes] with 16-byte vector v of row r at v ^ (r & 7): the canonical K-major
// 128-byte-swizzled layout that wgmma descriptors describe, and conflict-free for ldmatrix too.
constexpr int kHalfRowBytes = 64 * 2;

template <int kRows>
__device__ __forceinline__ std::uint32_t split_offset(int row, int vec16) {
  return static_cast<std::uint32_t>((vec16 >> 3) * kRows * kHalfRowBytes + row * kHalfRowBytes +
                                    (((vec16 & 7) ^ (row & 7)) << 4));
}

// Per-lane shared-memory offsets of the A and B fragments for each k16 step of a chunk (split
// layout), computed once per kernel: the main loop then only adds a tile base to them. Rows 16
// apart share a swizzle phase, so the other m16 / n16 tiles are plain additions.
template <int kMT, int kNT, int kRowsA, int kRowsB>
struct FragOffsets {
  std::uint32_t a[kChunk / kMmaK];
  std::uint32_t b[kChunk / kMmaK];
  __device__ __forceinline__ FragOffsets(int warp_row0, int warp_head0, int lane) {
    const int a_row = warp_row0 + (lane & 7) + ((lane >> 3) & 1) * 8;
    const int b_row = warp_head0 + (lane & 7) + (kNT == 1 ? 0 : (lane >> 4) * 8);
#pragma unroll
    for (int s = 0; s < kChunk / kMmaK; ++s) {
      a[s] = split_offset<kRowsA>(a_row, s * 2 + (lane >> 4));
      b[s] = split_offset<kRowsB>(b_row, s * 2 + ((lane >> 3) & 1));
    }
  }
};

// One k16 step of a kMT x kNT warp tile; a_addr / b_addr already include the lane's offset, and
// rows 16 apart lie row16_bytes apart (16 rows of a split-layout half: the default; bulk-copy tiles
// pass 16 x their pitch).
template <int kMT, int kNT>
__device__ __forceinline__ void warp_mma_step_at(float (&acc)[kMT][kNT][4], std::uint32_t a_addr,
                                                 std::uint32_t b_addr,
                                                 std::uint32_t row16_bytes = 16 * kHalfRowBytes) {
  std::uint32_t a[kMT][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) ldmatrix_x4(a[mt], a_addr + mt * row16_bytes);
  if constexpr (kNT == 1) {
    std::uint32_t b0, b1;
    ldmatrix_x2(b0, b1, b_addr);
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt) mma_bf16_16816(acc[mt][0], a[mt], b0, b1);
  } else {
#pragma unroll
    for (int np = 0; np < kNT / 2; ++np) {
      std::uint32_t b[4];
      ldmatrix_x4(b, b_addr + np * row16_bytes);
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
        mma_bf16_16816(acc[mt][2 * np], a[mt], b[0], b[1]);
        mma_bf16_16816(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

// A chunk's MMA chain: steps (<= 8) k16 steps from a zeroed accumulator; a full chunk takes the
// unguarded path.
template <int kMT, int kNT, int kRowsA, int kRowsB>
__device__ __forceinline__ void chunk_mma(float (&acc)[kMT][kNT][4],
                                          const FragOffsets<kMT, kNT, kRowsA, kRowsB>& off,
                                          std::uint32_t a_tile, std::uint32_t b_tile, int steps) {
  zero(acc);
  if (steps == kChunk / kMmaK) {
#pragma unroll
    for (int s = 0; s < kChunk / kMmaK; ++s) warp_mma_step_at(acc, a_tile + off.a[s], b_tile + off.b[s]);
  } else {
#pragma unroll
    for (int s = 0; s < kChunk / kMmaK; ++s) {
      if (s < steps) warp_mma_step_at(acc, a_tile + off.a[s], b_tile + off.b[s]);
    }
  }
}

template <int kMT, int kNT>
__device__ __forceinline__ void zero(float (&acc)[kMT][kNT][4]) {
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.f;
}

// sum += part, element by element (one step of the fixed-order chunk and group sums).
template <int kMT, int kNT>
__device__ __forceinline__ void accumulate(float (&sum)[kMT][kNT][4], const float (&part)[kMT][kNT][4]) {
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) sum[mt][nt][i] = __fadd_rn(sum[mt][nt][i], part[mt][nt][i]);
}

// 16-byte global -> shared copy; src_bytes = 0 writes zeros without reading global memory.
__device__ __forceinline__ void cp_async_16(std::uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// The epilogue, in the one order every backend path uses on the GPU.
__device__ __forceinline__ float scale_output(float total, float n_heads_inv_sqrt, float q_scale,
                                              float softmax_scale) {
  return __fmul_rn(__fmul_rn(__fmul_rn(total, n_heads_inv_sqrt), q_scale), softmax_scale);
}

}  // namespace dsa_indexer::cuda
