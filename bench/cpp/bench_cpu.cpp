// CPU benchmark of logits_head_gate next to an fp32 sgemm (OpenBLAS, on inputs upcast to fp32
// beforehand) of the same size. Counter GFLOP/s = 2*T*H*K / time.
// Build: cmake -B build -DDSA_INDEXER_BUILD_BENCH=ON && cmake --build build
// Run:   ./build/bench/cpp/dsa_indexer_bench_cpu   (DSA_INDEXER_NUM_THREADS sets our threads)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <cstring>
#include <random>
#include <vector>

#include "dsa_indexer/dsa_indexer.h"

#ifdef DSA_BENCH_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace {

struct Inputs {
  std::int64_t T, H, K;
  std::vector<std::uint16_t> x, w;  // bf16 bits
  std::vector<float> q, out;

  Inputs(std::int64_t T_, std::int64_t H_, std::int64_t K_) : T(T_), H(H_), K(K_) {
    std::mt19937 rng(42);
    std::normal_distribution<float> n(0.f, 1.f);
    auto bf16 = [](float f) {
      std::uint32_t u;
      std::memcpy(&u, &f, 4);
      return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    };
    x.resize(T * K);
    w.resize(H * K);
    for (auto& v : x) v = bf16(n(rng));
    for (auto& v : w) v = bf16(0.02f * n(rng));
    q.assign(T * H, 0.01f);
    out.assign(T * H, 0.f);
  }

  std::vector<float> upcast(const std::vector<std::uint16_t>& b) const {
    std::vector<float> f(b.size());
    for (std::size_t i = 0; i < b.size(); ++i) {
      const std::uint32_t u = static_cast<std::uint32_t>(b[i]) << 16;
      std::memcpy(&f[i], &u, 4);
    }
    return f;
  }
};

void set_counters(benchmark::State& state, std::int64_t T, std::int64_t H, std::int64_t K) {
  state.counters["GFLOP/s"] = benchmark::Counter(2e-9 * T * H * K, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["T"] = T;
  state.counters["H"] = H;
  state.counters["K"] = K;
}

void BM_logits_head_gate_cpu(benchmark::State& state) {
  const std::int64_t T = state.range(0), H = state.range(1), K = state.range(2);
  Inputs in(T, H, K);
  dsa_indexer::LogitsHeadGateParams p;
  p.x = in.x.data();
  p.x_row_stride = K;
  p.weight = in.w.data();
  p.weight_row_stride = K;
  p.q_scale = in.q.data();
  p.q_scale_stride_t = H;
  p.q_scale_stride_h = 1;
  p.out = in.out.data();
  p.out_stride_t = H;
  p.out_stride_h = 1;
  p.T = T;
  p.H = H;
  p.K = K;
  p.n_heads_inv_sqrt = 0.125f;
  p.softmax_scale = 0.08838834764831845f;
  for (auto _ : state) {
    dsa_indexer::logits_head_gate_cpu(p);
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, T, H, K);
}

void BM_openblas_sgemm_fp32(benchmark::State& state) {
  const std::int64_t T = state.range(0), H = state.range(1), K = state.range(2);
#ifdef DSA_BENCH_HAVE_OPENBLAS
  Inputs in(T, H, K);
  const std::vector<float> xf = in.upcast(in.x), wf = in.upcast(in.w);
  for (auto _ : state) {
    // out[T, H] = x[T, K] * W[H, K]^T, row major.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(T), static_cast<int>(H),
                static_cast<int>(K), 1.f, xf.data(), static_cast<int>(K), wf.data(),
                static_cast<int>(K), 0.f, in.out.data(), static_cast<int>(H));
    benchmark::DoNotOptimize(in.out.data());
    benchmark::ClobberMemory();
  }
  set_counters(state, T, H, K);
#else
  (void)T, (void)H, (void)K;
  state.SkipWithError("OpenBLAS not found at configure time: no sgemm baseline in this build");
#endif
}

// Each shape runs ours and then OpenBLAS back to back, so that both see the same machine load.
void register_all() {
  const std::int64_t shapes[][3] = {{1, 64, 7168},  {64, 64, 7168}, {512, 64, 7168},  // DeepSeek-V3.2
                                    {4096, 64, 7168}, {64, 32, 6144}, {4096, 32, 6144}};  // GLM-5
  for (const auto& s : shapes) {
    for (auto [name, fn] : {std::pair{"logits_head_gate_cpu", BM_logits_head_gate_cpu},
                            std::pair{"openblas_sgemm_fp32", BM_openblas_sgemm_fp32}}) {
      benchmark::RegisterBenchmark(name, fn)
          ->Args({s[0], s[1], s[2]})
          ->ArgNames({"T", "H", "K"})
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
#ifdef DSA_BENCH_HAVE_OPENBLAS
  benchmark::AddCustomContext("openblas", std::string(openblas_get_config()) + ", core " +
                                              openblas_get_corename() + ", " +
                                              std::to_string(openblas_get_num_threads()) + " threads");
#else
  benchmark::AddCustomContext("openblas", "not found at configure time: no sgemm baseline");
#endif
  const char* n = std::getenv("DSA_INDEXER_NUM_THREADS");
  benchmark::AddCustomContext("dsa_indexer threads", n ? n : "hardware_concurrency");
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
