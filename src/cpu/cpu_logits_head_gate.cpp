// CPU backend of logits_head_gate: a register-blocked bf16 GEMM (x [T, K] times weight^T [K, H])
// with the head-gate scales fused into the epilogue. Multithreaded over blocks of rows, vectorised
// with run-time ISA dispatch. Numbers and what lost: src/cpu/NOTES.md.
//
// Batch invariance and determinism: for every (t, h) the accumulation order depends only on
// (H, K) and on the machine's ISA, never on T, strides, alignment, the thread count or where row t
// sits in a tile: K is cut into fixed chunks of kChunk elements, each chunk is accumulated from
// zero sequentially in k (one SIMD lane per head, rows are independent lanes/registers), and the
// chunk sums are added in chunk order. A tile with fewer rows left runs the kernel built for that
// many rows (bf16) or aliases a valid row and throws the extra results away (fp32): each row's
// arithmetic is the same in every tile, block and thread.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "common/check.h"
#include "dsa_indexer/logits_head_gate.h"

namespace dsa_indexer {

namespace {

// NOTE: 256-element chunks keep the fp32 error at K = 7168 near 1e-7 relative (sequential fp32
// over all of K measured ~6x worse) and a packed weight chunk (256 x 64 heads) in L1/L2.
constexpr std::int64_t kChunk = 256;
constexpr int kLanes = 16;                 // heads per vector (one zmm, two ymm)
constexpr std::int64_t kRowBlock = 384;    // most rows per block (a thread's chunk-sum scratch)
// NOTE: one thread per 2^25 multiply-adds (~0.2 ms of one Zen 4 core) at most: T=64, H=64, K=7168
// (29M) ran in 0.32 ms on one thread and 0.35-0.53 ms on two (thread start, W packed by the caller).
constexpr std::int64_t kMinMacsPerThread = std::int64_t{1} << 25;
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
  Isa best = Isa::kBaseline;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::kAvx2;
  if (__builtin_cpu_supports("avx512f")) best = Isa::kAvx512;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")) best = Isa::kAvx512Bf16;
  // DSA_INDEXER_CPU_ISA=baseline|avx2|avx512 caps the choice (tests of the fallback kernels on a
  // machine that has better); read once per process, so every call of a process agrees.
  if (const char* cap = std::getenv("DSA_INDEXER_CPU_ISA")) {
    const std::string c = cap;
    const Isa want = c == "baseline" ? Isa::kBaseline : c == "avx2" ? Isa::kAvx2
                   : c == "avx512" ? Isa::kAvx512 : Isa::kAvx512Bf16;
    best = std::min(best, want);
  }
  return best;
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

// NOTE: GCC 12 warns -Wmaybe-uninitialized inside its own unpack intrinsics (their
// _mm512_undefined_epi32() pass-through operand); a false positive, silenced for the packing code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// 16 x 16 transpose of dwords: r[i] holds row i on entry, column i on return.
__attribute__((target("avx512f"))) inline void transpose16x16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int i = 0; i < 16; i += 8) {
    for (int j = 0; j < 4; ++j) {
      t[i + j] = _mm512_shuffle_i32x4(r[i + j], r[i + j + 4], 0x88);
      t[i + j + 4] = _mm512_shuffle_i32x4(r[i + j], r[i + j + 4], 0xdd);
    }
  }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_i32x4(t[j], t[j + 8], 0xdd);
  }
}

// Packs all of W for the bf16 kernel: dword [pair p][head h] = (W[h, 2p], W[h, 2p+1]), the high
// half 0 past an odd K, heads past H zero. Chunk c starts at pair c * kChunk / 2.
__attribute__((target("avx512f"))) void pack_weight_bf16(const std::uint16_t* w,
    std::int64_t w_stride, std::int64_t H, std::int64_t hpad, std::int64_t K, std::uint32_t* dst) {
  const std::int64_t full_pairs = K / 2, npairs = (K + 1) / 2;
  for (std::int64_t h0 = 0; h0 < hpad; h0 += kLanes) {
    std::int64_t p0 = 0;
    if (h0 + kLanes <= H) {  // 16 x 16 blocks through registers
      for (; p0 + kLanes <= full_pairs; p0 += kLanes) {
        __m512i r[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(w + (h0 + i) * w_stride + 2 * p0);
        transpose16x16(r);
        for (int j = 0; j < 16; ++j) _mm512_storeu_si512(dst + (p0 + j) * hpad + h0, r[j]);
      }
    }
    for (std::int64_t h = h0; h < h0 + kLanes; ++h) {  // what is left of this group, scalar
      const std::uint16_t* src = w + h * w_stride;
      for (std::int64_t p = p0; p < npairs; ++p) {
        std::uint32_t v = 0;
        if (h < H) v = 2 * p + 1 < K ? load_u32(src + 2 * p) : src[2 * p];
        dst[p * hpad + h] = v;
      }
    }
  }
}

#pragma GCC diagnostic pop

// ---- portable fp32 kernel: broadcast x[k], multiply-add with 16 packed fp32 heads ---------------
// The bf16 x bf16 product is exact in fp32, so mul+add equals fma here (no contraction needed).
// Written once with GCC vector extensions and inlined into per-ISA wrappers.
// V is the native vector (4, 8 or 16 floats); 16 heads are kLanes / lanes(V) of them. Vectors
// wider than the target (v16f under AVX2) made GCC go through memory: 17 GFLOP/s instead of 60+.
typedef float v4f __attribute__((vector_size(16)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v16f __attribute__((vector_size(64)));

// Unaligned, aliasing view of V in memory.
template <typename V>
struct Unaligned {
  typedef V type __attribute__((aligned(4), may_alias));
};

template <int R, typename V>
__attribute__((always_inline)) inline void tile_f32_body(
    const std::uint16_t* const* xr, const float* wp, std::int64_t hpad, std::int64_t kc,
    float* const* part, bool first) {
  using U = typename Unaligned<V>::type;
  constexpr int kWidth = static_cast<int>(sizeof(V) / 4);
  constexpr int kPer = kLanes / kWidth;
  V acc[R][kPer];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kPer; ++v) acc[r][v] = V{};
  for (std::int64_t k = 0; k < kc; ++k) {
    V w[kPer];
    for (int v = 0; v < kPer; ++v) w[v] = *reinterpret_cast<const U*>(wp + k * hpad + v * kWidth);
    for (int r = 0; r < R; ++r) {
      const float xv = bf16_to_f32(xr[r][k]);
      for (int v = 0; v < kPer; ++v) acc[r][v] += w[v] * xv;
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kPer; ++v) {
      U* dst = reinterpret_cast<U*>(part[r] + v * kWidth);
      *dst = first ? acc[r][v] : *dst + acc[r][v];
    }
}

// Rows per fp32 tile: 8 accumulator registers of each ISA (more spilled with GCC 12).
constexpr int f32_tile_rows(Isa isa) { return isa == Isa::kAvx512 ? 8 : isa == Isa::kAvx2 ? 4 : 2; }

__attribute__((target("avx512f"))) void tile_f32_avx512(const std::uint16_t* const* xr,
    const float* wp, std::int64_t hpad, std::int64_t kc, float* const* part, bool first) {
  tile_f32_body<f32_tile_rows(Isa::kAvx512), v16f>(xr, wp, hpad, kc, part, first);
}
__attribute__((target("avx2,fma"))) void tile_f32_avx2(const std::uint16_t* const* xr,
    const float* wp, std::int64_t hpad, std::int64_t kc, float* const* part, bool first) {
  tile_f32_body<f32_tile_rows(Isa::kAvx2), v8f>(xr, wp, hpad, kc, part, first);
}
void tile_f32_baseline(const std::uint16_t* const* xr, const float* wp, std::int64_t hpad,
                       std::int64_t kc, float* const* part, bool first) {
  tile_f32_body<f32_tile_rows(Isa::kBaseline), v4f>(xr, wp, hpad, kc, part, first);
}

// Packs all of W for the fp32 kernel: [k][head h], heads past H zero.
void pack_weight_f32(const std::uint16_t* w, std::int64_t w_stride, std::int64_t H,
                     std::int64_t hpad, std::int64_t K, float* dst) {
  for (std::int64_t k = 0; k < K; ++k)
    for (std::int64_t h = H; h < hpad; ++h) dst[k * hpad + h] = 0.f;
  for (std::int64_t h = 0; h < H; ++h) {
    const std::uint16_t* src = w + h * w_stride;
    for (std::int64_t k = 0; k < K; ++k) dst[k * hpad + h] = bf16_to_f32(src[k]);
  }
}

// ---- tiling --------------------------------------------------------------------------------
// Heads go in groups of up to 4 vectors (64 heads); the rows per tile fill ~24 accumulators.
// NOTE: on Zen 4 (K=7168, H=64) 4, 6 and 7 rows x 4 vectors run at the same speed: vdpbf16ps
// throughput bounds the kernel once there are >= 16 accumulators (NOTES.md).
struct HeadGroup {
  int nv;    // vectors of 16 heads
  int rows;  // rows per tile
};

constexpr int bf16_tile_rows(int nv) { return nv == 4 ? 6 : nv == 3 ? 8 : nv == 2 ? 12 : 24; }

std::vector<HeadGroup> head_groups(Isa isa, std::int64_t hvec) {
  std::vector<HeadGroup> g;
  for (std::int64_t left = hvec; left > 0;) {
    const int nv = isa == Isa::kAvx512Bf16 ? static_cast<int>(std::min<std::int64_t>(left, 4)) : 1;
    g.push_back({nv, isa == Isa::kAvx512Bf16 ? bf16_tile_rows(nv) : f32_tile_rows(isa)});
    left -= nv;
  }
  return g;
}

using Bf16Tile = void (*)(const std::uint16_t* const*, const std::uint32_t*, std::int64_t,
                          std::int64_t, bool, float* const*, bool);

// tile_bf16<R, NV> for R = 1 .. bf16_tile_rows(NV): a tile with fewer rows left runs the kernel of
// that many rows. Rows are independent registers, so each row's arithmetic is the same in all.
template <int NV, std::size_t... Rm1>
constexpr std::array<Bf16Tile, kMaxTileRows> bf16_tiles(std::index_sequence<Rm1...>) {
  return {tile_bf16<static_cast<int>(Rm1) + 1, NV>...};
}
template <int NV>
constexpr std::array<Bf16Tile, kMaxTileRows> bf16_tiles() {
  return bf16_tiles<NV>(std::make_index_sequence<bf16_tile_rows(NV)>{});
}
const std::array<Bf16Tile, kMaxTileRows> kBf16Tiles[4] = {bf16_tiles<1>(), bf16_tiles<2>(),
                                                          bf16_tiles<3>(), bf16_tiles<4>()};

int num_threads_from_env() {
  if (const char* s = std::getenv("DSA_INDEXER_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(s, &end, 10);
    if (end != s && *end == '\0' && n >= 1) return static_cast<int>(std::min<long>(n, 1024));
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

// Everything the row workers share: read-only once the weight is packed, but for the block counter.
struct Plan {
  const LogitsHeadGateParams* p;
  Isa isa;
  std::int64_t hpad;
  std::vector<HeadGroup> groups;
  const std::uint32_t* wpack;  // packed weight, bf16 pairs or fp32 (see the pack functions)
  std::int64_t block_rows;     // rows per block, <= kRowBlock
  std::atomic<std::int64_t> next_row{0};  // first row of the next block nobody has taken
};

// Computes blocks of rows, taken from pl.next_row until none is left; `part` is this thread's
// [kRowBlock + kMaxTileRows][hpad] scratch of chunk sums.
void run_blocks(Plan& pl, float* part) {
  const LogitsHeadGateParams& p = *pl.p;
  const auto* x = static_cast<const std::uint16_t*>(p.x);
  const std::int64_t hpad = pl.hpad;
  for (;;) {
    const std::int64_t b0 = pl.next_row.fetch_add(pl.block_rows, std::memory_order_relaxed);
    if (b0 >= p.T) break;
    const std::int64_t nrows = std::min(pl.block_rows, p.T - b0);
    for (std::int64_t k0 = 0; k0 < p.K; k0 += kChunk) {
      const std::int64_t kc = std::min(kChunk, p.K - k0);
      const bool first = k0 == 0;
      std::int64_t h_off = 0;
      for (const HeadGroup& g : pl.groups) {
        for (std::int64_t r0 = 0; r0 < nrows; r0 += g.rows) {
          const std::uint16_t* xr[kMaxTileRows];
          float* pr[kMaxTileRows];
          const int rows = static_cast<int>(std::min<std::int64_t>(g.rows, nrows - r0));
          for (int r = 0; r < g.rows; ++r) {
            // fp32 tiles are fixed-size: missing rows alias the last valid row, their results
            // land in the scratch rows past nrows and are never read.
            const std::int64_t row = std::min<std::int64_t>(r0 + r, nrows - 1);
            xr[r] = x + (b0 + row) * p.x_row_stride + k0;
            pr[r] = part + (r0 + r) * hpad + h_off;
          }
          if (pl.isa == Isa::kAvx512Bf16) {
            const std::uint32_t* wp = pl.wpack + (k0 / 2) * hpad + h_off;
            kBf16Tiles[g.nv - 1][rows - 1](xr, wp, hpad, kc / 2, kc % 2 != 0, pr, first);
          } else {
            const float* wp = reinterpret_cast<const float*>(pl.wpack) + k0 * hpad + h_off;
            if (pl.isa == Isa::kAvx512) tile_f32_avx512(xr, wp, hpad, kc, pr, first);
            else if (pl.isa == Isa::kAvx2) tile_f32_avx2(xr, wp, hpad, kc, pr, first);
            else tile_f32_baseline(xr, wp, hpad, kc, pr, first);
          }
        }
        h_off += static_cast<std::int64_t>(g.nv) * kLanes;
      }
    }
    // Epilogue, in the multiplication order of the contract.
    for (std::int64_t r = 0; r < nrows; ++r) {
      const std::int64_t t = b0 + r;
      const float* acc = part + r * hpad;
      const float* q = p.q_scale + t * p.q_scale_stride_t;
      float* o = p.out + t * p.out_stride_t;
      for (std::int64_t h = 0; h < p.H; ++h) {
        o[h * p.out_stride_h] =
            ((acc[h] * p.n_heads_inv_sqrt) * q[h * p.q_scale_stride_h]) * p.softmax_scale;
      }
    }
  }
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512Bf16: return "avx512_bf16 (vdpbf16ps)";
    case Isa::kAvx512: return "avx512f (fp32 fma)";
    case Isa::kAvx2: return "avx2 (fp32 fma)";
    case Isa::kBaseline: return "baseline sse2 (fp32)";
  }
  return "?";
}

// DSA_INDEXER_CPU_LOG=1 prints the choice of kernel, tiles and threads of every call to stderr.
void log_plan(const Plan& pl, int nthreads) {
  std::string tiles;
  for (const HeadGroup& g : pl.groups) {
    tiles += (tiles.empty() ? "" : " + ") + std::to_string(g.rows) + " rows x " +
             std::to_string(g.nv * kLanes) + " heads";
  }
  std::fprintf(stderr,
               "dsa_indexer cpu: T=%lld H=%lld K=%lld isa=%s tiles=[%s] chunk=%lld threads=%d "
               "block_rows=%lld\n",
               static_cast<long long>(pl.p->T), static_cast<long long>(pl.p->H),
               static_cast<long long>(pl.p->K), isa_name(pl.isa), tiles.c_str(),
               static_cast<long long>(kChunk), nthreads, static_cast<long long>(pl.block_rows));
}

}  // namespace

void logits_head_gate_cpu(const LogitsHeadGateParams& p) {
  check_params(p);
  if (p.T == 0) return;

  static const Isa isa = detect_isa();
  Plan pl;
  pl.p = &p;
  pl.isa = isa;
  const std::int64_t hvec = (p.H + kLanes - 1) / kLanes;
  pl.hpad = hvec * kLanes;
  pl.groups = head_groups(isa, hvec);

  // H * K <= 2^62 (check_params); T * H * K might not fit, hence rows per thread.
  const std::int64_t rows_per_thread = std::max<std::int64_t>(1, kMinMacsPerThread / (p.H * p.K));
  const std::int64_t max_threads = (p.T + rows_per_thread - 1) / rows_per_thread;
  const int nthreads = static_cast<int>(
      std::max<std::int64_t>(1, std::min<std::int64_t>(num_threads_from_env(), max_threads)));

  // All memory is allocated here, before any thread starts, so that workers cannot throw.
  // NOTE: the scratch is kept per calling thread: a fresh 1 MB allocation per call cost ~60 us of
  // page faults at T = 1 (K = 7168, H = 64), more than the whole computation.
  thread_local std::vector<std::uint32_t> wpack;
  thread_local std::vector<float> part;
  const auto* w = static_cast<const std::uint16_t*>(p.weight);
  const std::int64_t part_floats = (kRowBlock + kMaxTileRows) * pl.hpad;
  const std::int64_t wpack_words = (isa == Isa::kAvx512Bf16 ? (p.K + 1) / 2 : p.K) * pl.hpad;
  if (static_cast<std::int64_t>(wpack.size()) < wpack_words) wpack.resize(wpack_words);
  if (static_cast<std::int64_t>(part.size()) < part_floats * nthreads) part.resize(part_floats * nthreads);
  if (isa == Isa::kAvx512Bf16) {
    pack_weight_bf16(w, p.weight_row_stride, p.H, pl.hpad, p.K, wpack.data());
  } else {
    pack_weight_f32(w, p.weight_row_stride, p.H, pl.hpad, p.K, reinterpret_cast<float*>(wpack.data()));
  }
  pl.wpack = wpack.data();

  // Blocks of rows handed out from an atomic counter: a thread slowed down by other processes
  // takes fewer blocks. About 4 blocks per thread, a multiple of 24 rows (whole tiles).
  // NOTE: block boundaries do not change any row's arithmetic; only the speed depends on them.
  const std::int64_t want = (p.T + 4 * nthreads - 1) / (4 * nthreads);
  pl.block_rows = nthreads == 1 ? kRowBlock : std::min<std::int64_t>(kRowBlock, (want + 23) / 24 * 24);
  if (std::getenv("DSA_INDEXER_CPU_LOG")) log_plan(pl, nthreads);
  std::vector<std::thread> threads;
  threads.reserve(nthreads - 1);
  try {
    for (int i = 1; i < nthreads; ++i) {
      float* scratch = part.data() + i * part_floats;
      threads.emplace_back([&pl, scratch] { run_blocks(pl, scratch); });
    }
  } catch (const std::system_error&) {
    // Could not start a thread: the others (at least the caller) take its blocks.
  }
  run_blocks(pl, part.data());
  for (std::thread& th : threads) th.join();
}

}  // namespace dsa_indexer
