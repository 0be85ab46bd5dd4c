// Dev tool: what the first call of the CUDA backend in a fresh process is made of (issue 5's
// warm-up target: at most 2 ms for a new shape). Run it once per measurement, each run a new
// process: everything it times happens once per process.
//   --whole: wall clock of the first logits_head_gate_cuda call + stream synchronize at each T of
//            --T in order (the first T is the process's first call), then the steady call.
//   --phases: the same first call taken apart into the steps the entry point makes, each timed on
//            its own, in its order: device attributes, pointer checks, the dispatch (its fits and
//            occupancy queries), the chosen tile's occupancy query (cudaFuncSetAttribute +
//            cudaOccupancyMaxActiveClusters: where lazy loading brings the kernel in), the launch,
//            the synchronize; then a second whole call, and the first launch of an empty kernel of
//            this tool's own module for comparison.
// Context creation and the input allocations come first and are reported apart (the benchmark's
// worker creates the context before it times anything).
// Build: cmake -B build -DDSA_INDEXER_BUILD_DEV=ON && cmake --build build --target first_call
// Run:   for i in 1 2 3; do ./build/dev/cuda/first_call --phases; done
//        CUDA_MODULE_LOADING=EAGER ./build/dev/cuda/first_call --whole
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/sm90_logits_head_gate.h"
#include "dev_timing.h"
#include "dsa_indexer/logits_head_gate.h"

namespace {

__global__ void empty_kernel() {}

double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Inputs {
  void *x = nullptr, *w = nullptr;
  float *q = nullptr, *out = nullptr;
  dsa_indexer::LogitsHeadGateParams p{};
};

Inputs make_inputs(long T, long H, long K) {
  Inputs in;
  DSA_CUDA_CHECK(cudaMalloc(&in.x, T * K * 2));
  DSA_CUDA_CHECK(cudaMalloc(&in.w, H * K * 2));
  DSA_CUDA_CHECK(cudaMalloc(&in.q, T * H * 4));
  DSA_CUDA_CHECK(cudaMalloc(&in.out, T * H * 4));
  DSA_CUDA_CHECK(cudaMemset(in.x, 0, T * K * 2));
  DSA_CUDA_CHECK(cudaMemset(in.w, 0, H * K * 2));
  DSA_CUDA_CHECK(cudaMemset(in.q, 0, T * H * 4));
  in.p = dsa_dev::contiguous_params(in.x, in.w, in.q, in.out, T, H, K);
  return in;
}

// The tile the dispatch picks: describe_cuda_dispatch names it first.
bool chosen_tile(const dsa_indexer::LogitsHeadGateParams& p, dsa_indexer::cuda::Sm90Tile* tile) {
  const std::string d = dsa_indexer::describe_cuda_dispatch(p);
  for (auto t : dsa_indexer::cuda::kAllSm90Tiles) {
    const std::string name = dsa_indexer::cuda::sm90_tile_name(t);
    if (d.compare(0, name.size(), name) == 0 && d.size() > name.size() && d[name.size()] == ' ') {
      *tile = t;
      return true;
    }
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  bool phases = false;
  long K = 7168, H = 64;
  std::vector<long> Ts = {1, 4096};
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--phases")) {
      phases = true;
    } else if (!std::strcmp(argv[i], "--whole")) {
      phases = false;
    } else if (!std::strcmp(argv[i], "--shape") && i + 1 < argc) {
      const auto v = dsa_dev::parse_list(argv[++i]);
      K = v.at(0), H = v.at(1);
    } else if (!std::strcmp(argv[i], "--T") && i + 1 < argc) {
      Ts = dsa_dev::parse_list(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: %s [--whole | --phases] [--shape KxH] [--T 1,4096]\n", argv[0]);
      return 2;
    }
  }
  const char* loading = std::getenv("CUDA_MODULE_LOADING");
  double t0 = now_us();
  DSA_CUDA_CHECK(cudaSetDevice(0));
  DSA_CUDA_CHECK(cudaFree(nullptr));
  const double context_us = now_us() - t0;
  std::vector<Inputs> inputs;
  for (long T : Ts) inputs.push_back(make_inputs(T, H, K));
  cudaStream_t s;
  DSA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  DSA_CUDA_CHECK(cudaDeviceSynchronize());
  std::printf("mode %s, K %ld, H %ld, CUDA_MODULE_LOADING=%s, context %.0f us\n", phases ? "phases" : "whole", K,
              H, loading ? loading : "(unset)", context_us);

  const auto timed = [&](const char* what, auto&& f) {
    const double a = now_us();
    f();
    const double us = now_us() - a;
    std::printf("  %-58s %9.1f us\n", what, us);
    return us;
  };
  const auto whole = [&](const Inputs& in) {
    dsa_indexer::logits_head_gate_cuda(in.p, s);
    DSA_CUDA_CHECK(cudaStreamSynchronize(s));
  };

  if (phases) {
    const Inputs& in = inputs.front();
    dsa_indexer::cuda::Sm90Tile tile{};
    std::printf(" T = %ld, first call by phase:\n", Ts.front());
    double sum = 0;
    int dev = 0;
    sum += timed("cudaGetDevice + 2 x cudaDeviceGetAttribute", [&] {
      int a = 0, b = 0;
      DSA_CUDA_CHECK(cudaGetDevice(&dev));
      DSA_CUDA_CHECK(cudaDeviceGetAttribute(&a, cudaDevAttrComputeCapabilityMajor, dev));
      DSA_CUDA_CHECK(cudaDeviceGetAttribute(&b, cudaDevAttrComputeCapabilityMinor, dev));
    });
    sum += timed("4 x cudaPointerGetAttributes", [&] {
      cudaPointerAttributes a{};
      for (const void* ptr : {in.p.x, in.p.weight, static_cast<const void*>(in.p.q_scale),
                              static_cast<const void*>(in.p.out)}) {
        DSA_CUDA_CHECK(cudaPointerGetAttributes(&a, ptr));
      }
    });
    bool sm90 = false;
    sum += timed("dispatch (describe_cuda_dispatch: fits, occupancy queries)", [&] { sm90 = chosen_tile(in.p, &tile); });
    if (sm90) {
      std::printf("  (tile %s)\n", dsa_indexer::cuda::sm90_tile_name(tile).c_str());
      // Only the shape enters the shared-memory size, the occupancy cache's key.
      dsa_indexer::cuda::KernelParams k{};
      k.T = Ts.front(), k.H = static_cast<int>(H), k.K = static_cast<int>(K);
      k.G = static_cast<int>(dsa_indexer::cuda::group_len(K));
      sum += timed("chosen tile's occupancy query (lazy load of its kernel)",
                   [&] { (void)dsa_indexer::cuda::sm90_tile_max_clusters(tile, k, dev); });
    }
    sum += timed("logits_head_gate_cuda (first whole call, queries cached)", [&] { dsa_indexer::logits_head_gate_cuda(in.p, s); });
    sum += timed("cudaStreamSynchronize", [&] { DSA_CUDA_CHECK(cudaStreamSynchronize(s)); });
    std::printf("  %-58s %9.1f us\n", "sum", sum);
    timed("second whole call + synchronize", [&] { whole(in); });
    timed("empty kernel of this tool's module, first launch + sync", [&] {
      empty_kernel<<<1, 32, 0, s>>>();
      DSA_CUDA_CHECK(cudaGetLastError());
      DSA_CUDA_CHECK(cudaStreamSynchronize(s));
    });
    timed("empty kernel, second launch + sync", [&] {
      empty_kernel<<<1, 32, 0, s>>>();
      DSA_CUDA_CHECK(cudaGetLastError());
      DSA_CUDA_CHECK(cudaStreamSynchronize(s));
    });
  } else {
    for (std::size_t i = 0; i < Ts.size(); ++i) {
      std::printf(" T = %ld:\n", Ts[i]);
      timed("first call + synchronize", [&] { whole(inputs[i]); });
    }
    for (std::size_t i = 0; i < Ts.size(); ++i) {
      std::vector<double> us;
      for (int r = 0; r < 21; ++r) {
        const double a = now_us();
        whole(inputs[i]);
        us.push_back(now_us() - a);
      }
      std::sort(us.begin(), us.end());
      std::printf(" T = %ld: steady call + synchronize (median of 21) %9.1f us\n", Ts[i], us[us.size() / 2]);
    }
  }
  DSA_CUDA_CHECK(cudaStreamDestroy(s));
  for (Inputs& in : inputs) {
    for (void* ptr : {in.x, in.w, static_cast<void*>(in.q), static_cast<void*>(in.out)}) DSA_CUDA_CHECK(cudaFree(ptr));
  }
  return 0;
}
