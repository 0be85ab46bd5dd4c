// dsa_indexer example: the logits head gate of DeepSeek-V3.2 (K=7168, H=64) and GLM-5 (K=6144,
// H=32) on random inputs, on the CPU backend and, when a CUDA device is there, the CUDA backend;
// each result checked against a float64 reference with the SPEC.md bound. Exits 1 on a failure.
#include <dsa_indexer/dsa_indexer.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#ifdef DSA_INDEXER_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

double from_bf16(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

struct Case {
  const char* model;
  std::int64_t T, H, K;
};

struct Check {
  double max_rel_err;  // max over elements of |out - ref| / (sum_k |x w| * |scale|)
  bool ok;
};

// float64 reference and the SPEC.md checks: every element within 1e-4 * sum|x w| * |scale|,
// relative Frobenius error <= 1e-5.
Check check(const Case& c, const std::vector<std::uint16_t>& x, const std::vector<std::uint16_t>& w,
            const std::vector<float>& q, float nh, float ss, const std::vector<float>& out) {
  double worst = 0, err2 = 0, ref2 = 0;
  bool ok = true;
  for (std::int64_t t = 0; t < c.T; ++t) {
    for (std::int64_t h = 0; h < c.H; ++h) {
      double acc = 0, abs_acc = 0;
      for (std::int64_t k = 0; k < c.K; ++k) {
        const double p = from_bf16(x[t * c.K + k]) * from_bf16(w[h * c.K + k]);
        acc += p;
        abs_acc += std::fabs(p);
      }
      const double scale = double(nh) * q[t * c.H + h] * double(ss);
      const double ref = acc * scale, err = std::fabs(out[t * c.H + h] - ref);
      const double rel = err / (abs_acc * std::fabs(scale));
      worst = std::max(worst, rel);
      ok = ok && rel <= 1e-4;
      err2 += err * err;
      ref2 += ref * ref;
    }
  }
  ok = ok && std::sqrt(err2 / ref2) <= 1e-5;
  return {worst, ok};
}

double time_ms(const std::function<void()>& f, int reps) {
  f();  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / reps;
}

#ifdef DSA_INDEXER_WITH_CUDA
bool cuda_device_present() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}
#define CUDA_OK(call)                                                              \
  do {                                                                             \
    const cudaError_t e_ = (call);                                                 \
    if (e_ != cudaSuccess) {                                                       \
      std::fprintf(stderr, "%s: %s\n", #call, cudaGetErrorString(e_));             \
      std::exit(1);                                                                \
    }                                                                              \
  } while (0)
#endif

}  // namespace

int main() {
  const Case cases[] = {{"DeepSeek-V3.2", 1, 64, 7168},  {"DeepSeek-V3.2", 64, 64, 7168},
                        {"DeepSeek-V3.2", 1000, 64, 7168}, {"GLM-5", 1, 32, 6144},
                        {"GLM-5", 64, 32, 6144},           {"GLM-5", 1000, 32, 6144}};
  std::printf("dsa_indexer %s, CUDA backend in this build: %s\n", dsa_indexer::version(),
              dsa_indexer::cuda_backend_available() ? "yes" : "no");
#ifdef DSA_INDEXER_WITH_CUDA
  std::printf("CUDA device: %s\n", cuda_device_present() ? "yes, CUDA backend checked too"
                                                          : "none usable, CPU backend only");
#endif
  std::printf("%-8s %-14s %6s %4s %6s %10s %14s  %s\n", "backend", "model", "T", "H", "K", "time ms",
              "max rel err", "result");
  bool all_ok = true;
  std::mt19937 rng(2025);
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> uniform(0.f, 1.f);
  for (const Case& c : cases) {
    std::vector<std::uint16_t> x(c.T * c.K), w(c.H * c.K);
    std::vector<float> q(c.T * c.H), out(c.T * c.H, NAN);
    for (auto& v : x) v = to_bf16(normal(rng));
    for (auto& v : w) v = to_bf16(0.02f * normal(rng));
    for (auto& v : q) v = std::pow(10.f, -3.f + 2.f * uniform(rng));
    const float nh = 1.f / std::sqrt(float(c.H)), ss = 1.f / std::sqrt(128.f);

    dsa_indexer::LogitsHeadGateParams p;
    p.x = x.data();
    p.x_row_stride = c.K;
    p.weight = w.data();
    p.weight_row_stride = c.K;
    p.q_scale = q.data();
    p.q_scale_stride_t = c.H;
    p.q_scale_stride_h = 1;
    p.out = out.data();
    p.out_stride_t = c.H;
    p.out_stride_h = 1;
    p.T = c.T;
    p.H = c.H;
    p.K = c.K;
    p.n_heads_inv_sqrt = nh;
    p.softmax_scale = ss;

    const double ms = time_ms([&] { dsa_indexer::logits_head_gate_cpu(p); }, 5);
    const Check r = check(c, x, w, q, nh, ss, out);
    all_ok = all_ok && r.ok;
    std::printf("%-8s %-14s %6lld %4lld %6lld %10.3f %14.3g  %s\n", "cpu", c.model, (long long)c.T,
                (long long)c.H, (long long)c.K, ms, r.max_rel_err, r.ok ? "ok" : "FAILED");

#ifdef DSA_INDEXER_WITH_CUDA
    if (cuda_device_present()) {
      void *dx, *dw, *dq, *dout;
      CUDA_OK(cudaMalloc(&dx, x.size() * 2));
      CUDA_OK(cudaMalloc(&dw, w.size() * 2));
      CUDA_OK(cudaMalloc(&dq, q.size() * 4));
      CUDA_OK(cudaMalloc(&dout, out.size() * 4));
      CUDA_OK(cudaMemcpy(dx, x.data(), x.size() * 2, cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(dw, w.data(), w.size() * 2, cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(dq, q.data(), q.size() * 4, cudaMemcpyHostToDevice));
      dsa_indexer::LogitsHeadGateParams d = p;
      d.x = dx;
      d.weight = dw;
      d.q_scale = static_cast<const float*>(dq);
      d.out = static_cast<float*>(dout);
      const double gms = time_ms(
          [&] {
            dsa_indexer::logits_head_gate_cuda(d, nullptr);
            CUDA_OK(cudaStreamSynchronize(nullptr));
          },
          20);
      std::vector<float> gout(out.size(), NAN);
      CUDA_OK(cudaMemcpy(gout.data(), dout, gout.size() * 4, cudaMemcpyDeviceToHost));
      const Check g = check(c, x, w, q, nh, ss, gout);
      all_ok = all_ok && g.ok;
      std::printf("%-8s %-14s %6lld %4lld %6lld %10.3f %14.3g  %s\n", "cuda", c.model, (long long)c.T,
                  (long long)c.H, (long long)c.K, gms, g.max_rel_err, g.ok ? "ok" : "FAILED");
      for (void* ptr : {dx, dw, dq, dout}) cudaFree(ptr);
    }
#endif
  }
  std::printf("%s\n", all_ok ? "all results within the SPEC.md bound" : "FAILURES");
  return all_ok ? 0 : 1;
}
