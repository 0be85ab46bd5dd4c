// Dev tool: what the data movement of a split-K design without clusters would cost at prefill
// (src/cuda/NOTES.md, lead 3). The head gate's prefill kernel runs clusters of 8 CTAs, one K group
// each, joined through distributed shared memory; clusters of 8 fit 15 at once on an H200, on 120 of
// its 132 SMs, so a round holds 15 tiles. Here every CTA is on its own (one per SM, all 132): work
// item (tile, group) streams the group's 64 weight rows and the tile's R rows of x (one 1-D bulk copy
// per row of 1792 bytes, 16-row ring slots, as many slots in flight as fit), writes the group sum
// (R x 64 fp32, made up from the bytes read) to a workspace, and then either
//   - nothing more ("partials": the floor of this design's traffic),
//   - the last of the tile's 8 CTAs to finish (an atomic counter) adds the 8 group sums in group
//     order and writes the output rows ("last adds": fixed order, so bitwise reproducible), or
//   - a second kernel adds them ("2nd kernel").
// No arithmetic on the rows: a lower bound for a kernel with this schedule, beside the library's
// own call ("auto") on the same inputs. Items are numbered group-fastest, so a tile's 8 groups run
// in the same round. x rotates through a buffer larger than L2, as in the benchmark.
// Build: cmake -B build -DDSA_INDEXER_BUILD_DEV=ON && cmake --build build --target splitk_probe
// Run:   ./build/dev/cuda/splitk_probe
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <vector>

#include "cuda/cuda_check.h"
#include "dev_timing.h"
#include "dsa_indexer/logits_head_gate.h"

namespace {

using dsa_dev::launch_pdl;

constexpr int kK = 7168, kH = 64, kGroups = 8, kG = kK / kGroups;
constexpr int kRowBytes = kG * 2;        // one group of a row: 1792 bytes
constexpr int kSlotRows = 16;            // rows per ring slot
constexpr int kSlotBytes = kSlotRows * kRowBytes;
constexpr int kSlots = 7;                // 7 x 28 KB = 196 KB: one CTA per SM
constexpr int kThreads = 256;

enum Mode { kPartials = 0, kLastAdds = 1, kSecondKernel = 2 };

__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
  unsigned done = 0;
  while (!done) {
    asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
                 : "=r"(done)
                 : "r"(bar), "r"(parity)
                 : "memory");
  }
}

// One persistent CTA per SM; items item = blockIdx.x + j * gridDim.x, (tile, group) = (item / 8,
// item % 8). Fills of an item: 4 of weight rows, then R / 16 of x rows.
template <int R>
__global__ void __launch_bounds__(kThreads) splitk_kernel(const unsigned char* x, long T, const unsigned char* w,
                                                          float* ws, unsigned* counters, float* out, int mode) {
  extern __shared__ __align__(128) unsigned char smem[];
  __shared__ __align__(8) unsigned long long full[kSlots];
  __shared__ int last;
  constexpr int kFills = kH / kSlotRows + R / kSlotRows;
  const long tiles = (T + R - 1) / R;
  const long items = tiles * kGroups;
  const int tid = threadIdx.x;
  const unsigned base = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const auto bar = [&](int s) { return static_cast<unsigned>(__cvta_generic_to_shared(&full[s])); };
  if (tid == 0) {
    for (int s = 0; s < kSlots; ++s) asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar(s)) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  const long my_items = blockIdx.x < items ? (items - 1 - blockIdx.x) / gridDim.x + 1 : 0;
  const long total_fills = my_items * kFills;
  // Fill f: item j = f / kFills, k = f % kFills; rows of weight (k < 4) or x, into slot f % kSlots.
  const auto issue = [&](long f) {
    const long item = blockIdx.x + (f / kFills) * static_cast<long>(gridDim.x);
    const int k = static_cast<int>(f % kFills), g = static_cast<int>(item % kGroups);
    const long tile = item / kGroups;
    const unsigned char* src;
    long pitch;
    int rows;
    if (k < kH / kSlotRows) {
      src = w + static_cast<long>(k * kSlotRows) * kK * 2 + g * kRowBytes;
      pitch = kK * 2;
      rows = kSlotRows;
    } else {
      const long t0 = tile * R + (k - kH / kSlotRows) * kSlotRows;
      src = x + t0 * kK * 2 + g * kRowBytes;
      pitch = kK * 2;
      rows = static_cast<int>(max(0L, min(static_cast<long>(kSlotRows), T - t0)));
    }
    const int s = static_cast<int>(f % kSlots);
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar(s)), "r"(rows * kRowBytes)
                 : "memory");
    for (int r = 0; r < rows; ++r) {
      asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                       base + s * kSlotBytes + r * kRowBytes),
                   "l"(src + r * pitch), "r"(kRowBytes), "r"(bar(s))
                   : "memory");
    }
  };
  if (tid == 0)
    for (long f = 0; f < min(static_cast<long>(kSlots), total_fills); ++f) issue(f);
  unsigned acc = tid;
  for (long f = 0; f < total_fills; ++f) {
    const int s = static_cast<int>(f % kSlots);
    mbar_wait(bar(s), static_cast<unsigned>((f / kSlots) & 1));
    acc ^= *reinterpret_cast<const unsigned*>(smem + s * kSlotBytes + (tid * 112) % kSlotBytes);
    __syncthreads();  // every thread is done with slot s
    if (tid == 0 && f + kSlots < total_fills) issue(f + kSlots);
    if (f % kFills != kFills - 1) continue;
    // End of an item: its group sum to the workspace [tile][group][R][64].
    const long item = blockIdx.x + (f / kFills) * static_cast<long>(gridDim.x);
    const long tile = item / kGroups;
    const int g = static_cast<int>(item % kGroups);
    constexpr int kVecs = R * kH / 4;  // float4 per group sum
    float4* part = reinterpret_cast<float4*>(ws) + (tile * kGroups + g) * kVecs;
    const float v = static_cast<float>(acc & 0xff);
    for (int i = tid; i < kVecs; i += kThreads) part[i] = make_float4(v, v + 1, v + 2, v + 3);
    if (mode != kLastAdds) continue;
    __threadfence();
    __syncthreads();
    if (tid == 0) {
      const unsigned before = atomicAdd(&counters[tile], 1u);
      last = before == kGroups - 1;
      if (last) counters[tile] = 0;  // ready for the next launch
    }
    __syncthreads();
    if (!last) continue;
    __threadfence();
    const float4* all = reinterpret_cast<const float4*>(ws) + tile * kGroups * kVecs;
    const long rows_valid = min(static_cast<long>(R), T - tile * R);
    for (int i = tid; i < rows_valid * kH / 4; i += kThreads) {
      float4 a = __ldcg(all + i);
      for (int gg = 1; gg < kGroups; ++gg) {
        const float4 b = __ldcg(all + gg * kVecs + i);
        a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
      }
      reinterpret_cast<float4*>(out)[tile * kVecs + i] = a;
    }
  }
}

// The 8 group sums of every tile added in group order (mode kSecondKernel).
template <int R>
__global__ void __launch_bounds__(256) add_groups_kernel(const float* ws, long T, float* out) {
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  constexpr int kVecs = R * kH / 4;
  const long n = T * kH / 4;
  const long stride = gridDim.x * static_cast<long>(blockDim.x);
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const long tile = i / kVecs, j = i % kVecs;
    const float4* all = reinterpret_cast<const float4*>(ws) + tile * kGroups * kVecs + j;
    float4 a = all[0];
    for (int g = 1; g < kGroups; ++g) {
      const float4 b = all[g * kVecs];
      a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
    }
    reinterpret_cast<float4*>(out)[i] = a;
  }
}

}  // namespace

int main() {
  DSA_CUDA_CHECK(cudaSetDevice(0));
  cudaDeviceProp prop;
  DSA_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  const int nsm = prop.multiProcessorCount;
  constexpr std::size_t kSmem = static_cast<std::size_t>(kSlots) * kSlotBytes;
  for (auto k : {splitk_kernel<64>, splitk_kernel<128>})
    DSA_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(kSmem)));
  const long Ts[] = {1024, 2048, 4096, 8192, 16384, 32768};
  constexpr long kMaxT = 32768;
  const std::size_t x_bytes = static_cast<std::size_t>(kMaxT) * kK * 2;
  constexpr int kRegions = 4;  // 4 x 470 MB at T = 32768; at smaller T the regions are further apart still
  unsigned char *x, *w;
  float *ws, *out, *q;
  unsigned* counters;
  DSA_CUDA_CHECK(cudaMalloc(&x, kRegions * x_bytes));
  DSA_CUDA_CHECK(cudaMemset(x, 0, kRegions * x_bytes));
  DSA_CUDA_CHECK(cudaMalloc(&w, kH * kK * 2));
  DSA_CUDA_CHECK(cudaMemset(w, 0, kH * kK * 2));
  DSA_CUDA_CHECK(cudaMalloc(&ws, static_cast<std::size_t>(kMaxT) * kH * kGroups * 4));
  DSA_CUDA_CHECK(cudaMalloc(&out, static_cast<std::size_t>(kMaxT) * kH * 4));
  DSA_CUDA_CHECK(cudaMalloc(&q, static_cast<std::size_t>(kMaxT) * kH * 4));
  DSA_CUDA_CHECK(cudaMemset(q, 0, static_cast<std::size_t>(kMaxT) * kH * 4));
  DSA_CUDA_CHECK(cudaMalloc(&counters, kMaxT * sizeof(unsigned)));
  DSA_CUDA_CHECK(cudaMemset(counters, 0, kMaxT * sizeof(unsigned)));
  cudaStream_t s;
  DSA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

  std::printf("device: %s, %d SMs; K = %d, H = %d; one CTA per SM, %d ring slots of %d rows (%zu KB)\n", prop.name,
              nsm, kK, kH, kSlots, kSlotRows, kSmem >> 10);
  std::printf("us per call (graph replay, x rotated through %d regions); R = rows of x per tile; rounds = "
              "items / %d CTAs\n", kRegions, nsm);
  std::printf("%7s %9s | %9s %9s %9s %7s | %9s %9s %7s | %9s\n", "T", "floor", "R128 part", "last adds", "2nd kern",
              "rounds", "R64 part", "last adds", "rounds", "auto");
  for (long T : Ts) {
    const auto xr = [&](int i) { return x + (i % kRegions) * x_bytes; };
    std::vector<double> us;
    const auto run = [&](auto kernel, long R, int mode) {
      const long items = (T + R - 1) / R * kGroups;
      const unsigned grid = static_cast<unsigned>(std::min<long>(items, nsm));
      return dsa_dev::time_graph(s, 20, [&](int i) {
        launch_pdl(kernel, dim3(grid), dim3(kThreads), kSmem, s, static_cast<const unsigned char*>(xr(i)), T,
                   static_cast<const unsigned char*>(w), ws, counters, out, mode);
        if (mode == kSecondKernel) {
          launch_pdl(R == 128 ? add_groups_kernel<128> : add_groups_kernel<64>, dim3(4 * nsm), dim3(256), 0, s,
                     static_cast<const float*>(ws), T, out);
        }
      });
    };
    const double floor_us = (T * kK * 2.0 + kH * kK * 2.0 + 2 * T * kH * 4.0) / 4.2e6;
    us.push_back(run(splitk_kernel<128>, 128, kPartials));
    us.push_back(run(splitk_kernel<128>, 128, kLastAdds));
    us.push_back(run(splitk_kernel<128>, 128, kSecondKernel));
    us.push_back(run(splitk_kernel<64>, 64, kPartials));
    us.push_back(run(splitk_kernel<64>, 64, kLastAdds));
    dsa_indexer::LogitsHeadGateParams p = dsa_dev::contiguous_params(x, w, q, out, T, kH, kK);
    us.push_back(dsa_dev::time_graph(s, 20, [&](int i) {
      p.x = xr(i);
      dsa_indexer::logits_head_gate_cuda(p, s);
    }));
    const double rounds128 = static_cast<double>((T + 127) / 128 * kGroups) / nsm;
    const double rounds64 = static_cast<double>((T + 63) / 64 * kGroups) / nsm;
    std::printf("%7ld %9.2f | %9.2f %9.2f %9.2f %7.2f | %9.2f %9.2f %7.2f | %9.2f\n", T, floor_us, us[0], us[1], us[2],
                rounds128, us[3], us[4], rounds64, us[5]);
    std::fflush(stdout);
  }
  DSA_CUDA_CHECK(cudaStreamDestroy(s));
  for (void* ptr : {static_cast<void*>(x), static_cast<void*>(w), static_cast<void*>(ws), static_cast<void*>(out),
                    static_cast<void*>(q), static_cast<void*>(counters)})
    DSA_CUDA_CHECK(cudaFree(ptr));
  return 0;
}
