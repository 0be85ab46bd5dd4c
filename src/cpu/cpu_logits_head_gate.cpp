// CPU backend of logits_head_gate: a register-blocked bf16 GEMM (x [T, K] times weight^T [K, H])
// with the head-gate scales fused into the epilogue. Multithreaded over row ranges, vectorised
// with run-time ISA dispatch. Numbers and what lost: src/cpu/NOTES.md.
//
// Batch invariance and determinism: for every (t, h) the accumulation order depends only on
// (H, K) and on the machine's ISA, never on T, strides, alignment, the thread count or where row t
// sits in a tile: K is cut into fixed chunks of kChunk elements, each chunk is accumulated from
// zero sequentially in k (one SIMD lane per head, rows are independent lanes/registers), and the
// chunk sums are added in chunk order. Tail rows of a tile alias a valid row and their results are
// thrown away, so every row runs exactly the same instructions.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "common/check.h"
#include "dsa_indexer/logits_head_gate.h"

namespace dsa_indexer {

namespace {

// NOTE: 256-element chunks keep the fp32 error at K = 7168 near 1e-7 relative (sequential fp32
// over all of K measured ~6x worse) and a packed weight chunk (256 x 64 heads) in L1/L2.
constexpr std::int64_t kChunk = 256;
constexpr int kLanes = 16;                 // heads per vector (one zmm, two ymm)
constexpr std::int64_t kRowBlock = 384;    // rows per partial-sum block of one thread
constexpr std::int64_t kMinRowsPerThread = 32;  // below this, packing W per thread dominates
constexpr int kMaxTileRows = 24;

inline float bf16_to_f32(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline std::uint32_t load_u32(const std::uint16_t* p) {
  std::uint32_t u;
  std::memcpy(&u, p, 4);
  return u;
}

enum class Isa { kBaseline, kAvx2, kAvx512, kAvx512Bf16 };

Isa detect_isa() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")) {
    return Isa::kAvx512Bf16;
  }
  if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
  return Isa::kBaseline;
}

// ---- avx512_bf16 kernel: vdpbf16ps on (x[k], x[k+1]) pairs ------------------------------------
// Packed weight chunk: dword [pair p][head h] = (W[h, k0+2p] low half, W[h, k0+2p+1] high half),
// heads padded with zeros to a multiple of 16, pair stride hpad dwords. The instruction flushes
// subnormal inputs and outputs to zero (documented in NOTES.md; real activations have none).
template <int R, int NV>
__attribute__((target("avx512f,avx512bf16"))) void tile_bf16(
    const std::uint16_t* const* xr, const std::uint32_t* wp, std::int64_t hpad,
    std::int64_t npairs, bool odd_tail, float* const* part, bool first) {
  __m512 acc[R][NV];
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();

  for (std::int64_t p = 0; p < npairs; ++p) {
    const std::uint32_t* w_row = wp + p * hpad;
    __m512bh w[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) w[v] = (__m512bh)_mm512_loadu_si512(w_row + kLanes * v);
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r) {
      const __m512bh xb = (__m512bh)_mm512_set1_epi32(static_cast<int>(load_u32(xr[r] + 2 * p)));
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], xb, w[v]);
    }
  }
  if (odd_tail) {  // last element of an odd K: x read alone (never past the row), weight pair (w, 0)
    const std::uint32_t* w_row = wp + npairs * hpad;
    __m512bh w[NV];
    for (int v = 0; v < NV; ++v) w[v] = (__m512bh)_mm512_loadu_si512(w_row + kLanes * v);
    for (int r = 0; r < R; ++r) {
      const __m512bh xb = (__m512bh)_mm512_set1_epi32(static_cast<int>(xr[r][2 * npairs]));
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], xb, w[v]);
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* dst = part[r] + kLanes * v;
      _mm512_storeu_ps(dst, first ? acc[r][v] : _mm512_add_ps(_mm512_loadu_ps(dst), acc[r][v]));
    }
}

void pack_chunk_bf16(const std::uint16_t* w, std::int64_t w_stride, std::int64_t H,
                     std::int64_t hpad, std::int64_t k0, std::int64_t kc, std::uint32_t* dst) {
  const std::int64_t npairs = (kc + 1) / 2;
  std::memset(dst, 0, sizeof(std::uint32_t) * npairs * hpad);
  for (std::int64_t h = 0; h < H; ++h) {
    const std::uint16_t* src = w + h * w_stride + k0;
    for (std::int64_t p = 0; p < kc / 2; ++p) dst[p * hpad + h] = load_u32(src + 2 * p);
    if (kc % 2) dst[(kc / 2) * hpad + h] = src[kc - 1];
  }
}

// ---- portable fp32 kernel: broadcast x[k], multiply-add with 16 packed fp32 heads ---------------
// The bf16 x bf16 product is exact in fp32, so mul+add equals fma here (no contraction needed).
// Written once with GCC vector extensions and inlined into per-ISA wrappers.
typedef float v16f __attribute__((vector_size(64)));

template <int R>
__attribute__((always_inline)) inline void tile_f32_body(
    const std::uint16_t* const* xr, const float* wp, std::int64_t hpad, std::int64_t kc,
    float* const* part, bool first) {
  v16f acc[R];
  for (int r = 0; r < R; ++r) acc[r] = v16f{};
  for (std::int64_t k = 0; k < kc; ++k) {
    v16f w;
    std::memcpy(&w, wp + k * hpad, sizeof(w));
    for (int r = 0; r < R; ++r) acc[r] += w * bf16_to_f32(xr[r][k]);
  }
  for (int r = 0; r < R; ++r) {
    v16f cur;
    std::memcpy(&cur, part[r], sizeof(cur));
    cur = first ? acc[r] : cur + acc[r];
    std::memcpy(part[r], &cur, sizeof(cur));
  }
}

constexpr int kF32TileRows = 4;
__attribute__((target("avx512f"))) void tile_f32_avx512(const std::uint16_t* const* xr,
    const float* wp, std::int64_t hpad, std::int64_t kc, float* const* part, bool first) {
  tile_f32_body<kF32TileRows>(xr, wp, hpad, kc, part, first);
}
__attribute__((target("avx2,fma"))) void tile_f32_avx2(const std::uint16_t* const* xr,
    const float* wp, std::int64_t hpad, std::int64_t kc, float* const* part, bool first) {
  tile_f32_body<kF32TileRows>(xr, wp, hpad, kc, part, first);
}
void tile_f32_baseline(const std::uint16_t* const* xr, const float* wp, std::int64_t hpad,
                       std::int64_t kc, float* const* part, bool first) {
  tile_f32_body<kF32TileRows>(xr, wp, hpad, kc, part, first);
}

void pack_chunk_f32(const std::uint16_t* w, std::int64_t w_stride, std::int64_t H,
                    std::int64_t hpad, std::int64_t k0, std::int64_t kc, float* dst) {
  std::memset(dst, 0, sizeof(float) * kc * hpad);
  for (std::int64_t h = 0; h < H; ++h) {
    const std::uint16_t* src = w + h * w_stride + k0;
    for (std::int64_t k = 0; k < kc; ++k) dst[k * hpad + h] = bf16_to_f32(src[k]);
  }
}

// ---- tiling --------------------------------------------------------------------------------
// Heads go in groups of up to 4 vectors (64 heads); the rows per tile fill ~24 accumulators.
// NOTE: tried on Zen 4 (T=4096, K=7168, H=64): see NOTES.md for 4x6 vs 2x12 vs 4x4.
struct HeadGroup {
  int nv;    // vectors of 16 heads
  int rows;  // rows per tile
};

constexpr int bf16_tile_rows(int nv) { return nv == 4 ? 6 : nv == 3 ? 8 : nv == 2 ? 12 : 24; }

std::vector<HeadGroup> head_groups(Isa isa, std::int64_t hvec) {
  std::vector<HeadGroup> g;
  for (std::int64_t left = hvec; left > 0;) {
    const int nv = isa == Isa::kAvx512Bf16 ? static_cast<int>(std::min<std::int64_t>(left, 4)) : 1;
    g.push_back({nv, isa == Isa::kAvx512Bf16 ? bf16_tile_rows(nv) : kF32TileRows});
    left -= nv;
  }
  return g;
}

using Bf16Tile = void (*)(const std::uint16_t* const*, const std::uint32_t*, std::int64_t,
                          std::int64_t, bool, float* const*, bool);
Bf16Tile bf16_tile_for(int nv) {
  switch (nv) {
    case 4: return tile_bf16<bf16_tile_rows(4), 4>;
    case 3: return tile_bf16<bf16_tile_rows(3), 3>;
    case 2: return tile_bf16<bf16_tile_rows(2), 2>;
    default: return tile_bf16<bf16_tile_rows(1), 1>;
  }
}

int num_threads_from_env() {
  if (const char* s = std::getenv("DSA_INDEXER_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(s, &end, 10);
    if (end != s && *end == '\0' && n >= 1) return static_cast<int>(std::min<long>(n, 1024));
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// Computes rows [t_begin, t_end) of out. Scratch is owned by the caller (one per thread).
struct Worker {
  const LogitsHeadGateParams* p;
  Isa isa;
  std::int64_t hpad;
  const std::vector<HeadGroup>* groups;
  std::vector<float> part;       // [kRowBlock + kMaxTileRows][hpad]
  std::vector<std::uint32_t> wpack;  // one packed chunk: bf16 pairs or fp32

  void run(std::int64_t t_begin, std::int64_t t_end) {
    const auto* x = static_cast<const std::uint16_t*>(p->x);
    const auto* w = static_cast<const std::uint16_t*>(p->weight);
    const std::int64_t K = p->K;
    for (std::int64_t b0 = t_begin; b0 < t_end; b0 += kRowBlock) {
      const std::int64_t nrows = std::min(kRowBlock, t_end - b0);
      for (std::int64_t k0 = 0; k0 < K; k0 += kChunk) {
        const std::int64_t kc = std::min(kChunk, K - k0);
        const bool first = k0 == 0;
        if (isa == Isa::kAvx512Bf16) {
          pack_chunk_bf16(w, p->weight_row_stride, p->H, hpad, k0, kc, wpack.data());
        } else {
          pack_chunk_f32(w, p->weight_row_stride, p->H, hpad, k0, kc,
                         reinterpret_cast<float*>(wpack.data()));
        }
        std::int64_t h_off = 0;
        for (const HeadGroup& g : *groups) {
          for (std::int64_t r0 = 0; r0 < nrows; r0 += g.rows) {
            const std::uint16_t* xr[kMaxTileRows];
            float* pr[kMaxTileRows];
            for (int r = 0; r < g.rows; ++r) {
              // Tail rows alias the last valid row; their results land in scratch rows.
              const std::int64_t row = std::min<std::int64_t>(r0 + r, nrows - 1);
              xr[r] = x + (b0 + row) * p->x_row_stride + k0;
              pr[r] = part.data() + (r0 + r) * hpad + h_off;
            }
            if (isa == Isa::kAvx512Bf16) {
              bf16_tile_for(g.nv)(xr, wpack.data() + h_off, hpad, kc / 2, kc % 2 != 0, pr, first);
            } else {
              const float* wp = reinterpret_cast<const float*>(wpack.data()) + h_off;
              if (isa == Isa::kAvx512) tile_f32_avx512(xr, wp, hpad, kc, pr, first);
              else if (isa == Isa::kAvx2) tile_f32_avx2(xr, wp, hpad, kc, pr, first);
              else tile_f32_baseline(xr, wp, hpad, kc, pr, first);
            }
          }
          h_off += static_cast<std::int64_t>(g.nv) * kLanes;
        }
      }
      // Epilogue, in the multiplication order of the contract.
      for (std::int64_t r = 0; r < nrows; ++r) {
        const std::int64_t t = b0 + r;
        const float* acc = part.data() + r * hpad;
        const float* q = p->q_scale + t * p->q_scale_stride_t;
        float* o = p->out + t * p->out_stride_t;
        for (std::int64_t h = 0; h < p->H; ++h) {
          o[h * p->out_stride_h] =
              ((acc[h] * p->n_heads_inv_sqrt) * q[h * p->q_scale_stride_h]) * p->softmax_scale;
        }
      }
    }
  }
};

}  // namespace

void logits_head_gate_cpu(const LogitsHeadGateParams& p) {
  check_params(p);
  if (p.T == 0) return;

  static const Isa isa = detect_isa();
  const std::int64_t hvec = (p.H + kLanes - 1) / kLanes;
  const std::int64_t hpad = hvec * kLanes;
  const std::vector<HeadGroup> groups = head_groups(isa, hvec);
  const std::int64_t wpack_words = (isa == Isa::kAvx512Bf16 ? kChunk / 2 : kChunk) * hpad;

  const std::int64_t max_threads = (p.T + kMinRowsPerThread - 1) / kMinRowsPerThread;
  const int nthreads =
      static_cast<int>(std::max<std::int64_t>(1, std::min<std::int64_t>(num_threads_from_env(), max_threads)));

  // Scratch is allocated here so that worker threads cannot throw.
  std::vector<Worker> workers(nthreads);
  for (Worker& wk : workers) {
    wk.p = &p;
    wk.isa = isa;
    wk.hpad = hpad;
    wk.groups = &groups;
    wk.part.resize((kRowBlock + kMaxTileRows) * hpad);
    wk.wpack.resize(wpack_words);
  }
  // Contiguous row ranges, one per thread.
  const std::int64_t per = (p.T + nthreads - 1) / nthreads;
  if (nthreads == 1) {
    workers[0].run(0, p.T);
    return;
  }
  std::vector<std::thread> threads;
  threads.reserve(nthreads - 1);
  for (int i = 1; i < nthreads; ++i) {
    const std::int64_t b = std::min(p.T, i * per), e = std::min(p.T, (i + 1) * per);
    threads.emplace_back([&workers, i, b, e] { workers[i].run(b, e); });
  }
  workers[0].run(0, std::min(p.T, per));
  for (std::thread& th : threads) th.join();
}

}  // namespace dsa_indexer
