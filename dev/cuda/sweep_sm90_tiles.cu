// Dev tool: checks every sm_90a tile against the portable kernel (bitwise) and a float64 reference
// (sampled rows), then times each tile, the portable kernel and the public dispatch over CUDA-graph
// replays with rotating inputs, beside two reference points timed the same way: an empty kernel
// (what one graph node costs) and a kernel that only streams the op's bytes (what moving them
// costs before any arithmetic). Its table is what the dispatch thresholds in
// src/cuda/cuda_logits_head_gate.cpp were chosen from (numbers in src/cuda/NOTES.md).
// Build: cmake -B build -DDSA_INDEXER_BUILD_DEV=ON && cmake --build build --target sweep_sm90_tiles
// Run:   ./build/dev/cuda/sweep_sm90_tiles [--shapes 7168x64,6144x32] [--T 1,2,4,...] [--json file]
//        [--rotate-weight]   (the weight rotates with x, as in the benchmark, so it comes from HBM;
//                             by default one weight buffer stays in L2, as engines that keep it hot)
//        [--static-weight]   (LogitsHeadGateParams::static_weight: the weight copied before the wait)
//        [--tiles T64H64tma,T128H64ws]   (only these tiles are checked and timed; default: all)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/cuda_check.h"
#include "cuda/generic_logits_head_gate.h"
#include "cuda/sm90_logits_head_gate.h"
#include "dev_timing.h"
#include "dsa_indexer/logits_head_gate.h"

using namespace dsa_indexer;
using namespace dsa_indexer::cuda;
using dsa_dev::launch_pdl;
using dsa_dev::parse_list;
using dsa_dev::time_graph;

namespace {

std::uint16_t to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<std::uint16_t>((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
double from_bf16(std::uint16_t b) {
  std::uint32_t u = std::uint32_t{b} << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Launch rules of the head gate's kernel (programmatic dependent launch): the next kernel may start
// its prologue early, but waits for this one before reading memory.
__device__ __forceinline__ void pdl_begin() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__global__ void empty_kernel() { pdl_begin(); }

// Reads x, the weight and q_scale once with 16-byte loads spread over the whole GPU and writes the
// output's bytes: the op's memory traffic with no arithmetic. The stores depend on every load, so
// nothing is optimised away.
__global__ void __launch_bounds__(512) read_probe_kernel(const uint4* x, std::size_t nx, const uint4* w,
                                                          std::size_t nw, const uint4* q, std::size_t nq,
                                                          uint4* out, std::size_t nout) {
  pdl_begin();
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  const std::size_t first = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  unsigned acc = 0;
  for (std::size_t i = first; i < nx + nw + nq; i += stride) {
    const uint4 v = i < nx ? __ldg(x + i) : i < nx + nw ? __ldg(w + (i - nx)) : __ldg(q + (i - nx - nw));
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  for (std::size_t i = first; i < nout; i += stride) out[i] = make_uint4(acc, acc, acc, acc);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<long> shapes = {7168, 64, 6144, 32};
  std::vector<long> Ts;
  for (long t = 1; t <= 65536; t *= 2) Ts.push_back(t);
  const char* json_path = nullptr;
  bool rotate_weight = false, static_weight = false;
  std::string only_tiles;  // comma-separated labels, empty: every tile
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--rotate-weight")) { rotate_weight = true; continue; }
    if (!std::strcmp(argv[i], "--static-weight")) { static_weight = true; continue; }
    if (i + 1 >= argc) break;
    if (!std::strcmp(argv[i], "--shapes")) shapes = parse_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--T")) Ts = parse_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--json")) json_path = argv[i + 1];
    if (!std::strcmp(argv[i], "--tiles")) only_tiles = "," + std::string(argv[i + 1]) + ",";
    ++i;
  }
  int dev = 0;
  DSA_CUDA_CHECK(cudaSetDevice(dev));
  cudaDeviceProp prop;
  DSA_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  std::printf("device: %s, %d SMs, L2 %d MB; weight %s%s\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20, rotate_weight ? "rotated with x (from HBM)" : "one buffer (in L2)",
              static_weight ? ", static (copied before the wait)" : "");
  cudaStream_t s;
  DSA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  FILE* js = json_path ? std::fopen(json_path, "w") : nullptr;
  if (js) {
    std::fprintf(js, "{\"device\": \"%s\", \"weight_rotated\": %s, \"static_weight\": %s, \"records\": [\n",
                 prop.name, rotate_weight ? "true" : "false", static_weight ? "true" : "false");
  }
  bool first_rec = true, all_ok = true;
  std::mt19937 rng(1234);

  for (std::size_t si = 0; si + 1 < shapes.size(); si += 2) {
    const int K = static_cast<int>(shapes[si]), H = static_cast<int>(shapes[si + 1]);
    std::printf("\n== K=%d H=%d ==\n%8s", K, H, "T");
    for (Sm90Tile tile : kAllSm90Tiles) std::printf(" %12s", sm90_tile_label(tile).c_str());
    std::printf(" %9s %9s %9s %9s  auto choice\n", "generic", "auto", "empty", "read");
    // Weight: one buffer, or (--rotate-weight) one copy per x buffer.
    std::vector<std::uint16_t> hw(static_cast<std::size_t>(H) * K);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (auto& v : hw) v = to_bf16(nd(rng) * 0.05f);
    for (long T : Ts) {
      const std::size_t xbytes = static_cast<std::size_t>(T) * K * 2;
      const int nbuf = static_cast<int>(std::clamp<std::size_t>((256u << 20) / xbytes + 1, 1, 32));
      std::vector<std::uint16_t*> dws(rotate_weight ? nbuf : 1);
      for (auto& w : dws) {
        DSA_CUDA_CHECK(cudaMalloc(&w, hw.size() * 2));
        DSA_CUDA_CHECK(cudaMemcpy(w, hw.data(), hw.size() * 2, cudaMemcpyHostToDevice));
      }
      const auto dw_of = [&](int b) { return dws[b % dws.size()]; };
      std::vector<std::uint16_t> hx(static_cast<std::size_t>(T) * K);
      std::vector<float> hq(static_cast<std::size_t>(T) * H);
      std::uniform_real_distribution<float> ud(0.5f, 2.f);
      for (auto& v : hx) v = to_bf16(nd(rng));
      for (auto& v : hq) v = ud(rng);
      std::vector<std::uint16_t*> dx(nbuf);
      std::vector<float*> dq(nbuf), dout(nbuf);
      for (int b = 0; b < nbuf; ++b) {
        DSA_CUDA_CHECK(cudaMalloc(&dx[b], xbytes));
        DSA_CUDA_CHECK(cudaMalloc(&dq[b], hq.size() * 4));
        DSA_CUDA_CHECK(cudaMalloc(&dout[b], hq.size() * 4));
        DSA_CUDA_CHECK(cudaMemcpy(dx[b], hx.data(), xbytes, cudaMemcpyHostToDevice));
        DSA_CUDA_CHECK(cudaMemcpy(dq[b], hq.data(), hq.size() * 4, cudaMemcpyHostToDevice));
      }
      // Pageable copies return before their DMA has landed, and the launches below go to a
      // non-blocking stream, which does not wait for it.
      DSA_CUDA_CHECK(cudaDeviceSynchronize());
      const auto params = [&](int b) {
        LogitsHeadGateParams p;
        p.x = dx[b]; p.x_row_stride = K; p.weight = dw_of(b); p.weight_row_stride = K;
        p.q_scale = dq[b]; p.q_scale_stride_t = H; p.q_scale_stride_h = 1;
        p.out = dout[b]; p.out_stride_t = H; p.out_stride_h = 1;
        p.T = T; p.H = H; p.K = K; p.n_heads_inv_sqrt = 1.f / std::sqrt(float(H));
        p.softmax_scale = 1.f / std::sqrt(128.f);
        p.static_weight = static_weight;
        return p;
      };
      const auto kparams = [&](int b) {
        const LogitsHeadGateParams p = params(b);
        KernelParams k{};
        k.x = dx[b]; k.w = dw_of(b); k.q_scale = dq[b]; k.out = dout[b];
        k.ldx = K; k.ldw = K; k.qs_t = H; k.qs_h = 1; k.out_t = H; k.out_h = 1;
        k.T = T; k.H = H; k.K = K; k.G = static_cast<int>(group_len(K));
        k.n_heads_inv_sqrt = p.n_heads_inv_sqrt; k.softmax_scale = p.softmax_scale;
        k.static_weight = p.static_weight;
        return k;
      };
      // Reference: portable kernel, itself checked against float64 on sampled rows.
      std::vector<float> ref(hq.size()), got(hq.size());
      DSA_CUDA_CHECK(cudaMemset(dout[0], 0xff, hq.size() * 4));
      launch_generic(kparams(0), s);
      DSA_CUDA_CHECK(cudaStreamSynchronize(s));
      DSA_CUDA_CHECK(cudaMemcpy(ref.data(), dout[0], ref.size() * 4, cudaMemcpyDeviceToHost));
      double err2 = 0, ref2 = 0;
      bool ok = true;
      const long stride = std::max<long>(1, T / 64);
      for (long t = 0; t < T; t += stride) {
        for (int h = 0; h < H; ++h) {
          double acc = 0, mag = 0;
          for (int k = 0; k < K; ++k) {
            const double pr = from_bf16(hx[t * K + k]) * from_bf16(hw[static_cast<std::size_t>(h) * K + k]);
            acc += pr;
            mag += std::fabs(pr);
          }
          const double sc = double(params(0).n_heads_inv_sqrt) * hq[t * H + h] * double(params(0).softmax_scale);
          const double r = acc * sc, g = ref[t * H + h];
          err2 += (g - r) * (g - r);
          ref2 += r * r;
          if (!(std::fabs(g - r) <= 1e-4 * mag * std::fabs(sc))) ok = false;
        }
      }
      const double rel = std::sqrt(err2 / ref2);
      if (!(rel <= 1e-5)) ok = false;
      std::vector<double> us;
      std::string bitwise = "";
      for (Sm90Tile tile : kAllSm90Tiles) {
        const bool chosen = only_tiles.empty() || only_tiles.find("," + sm90_tile_label(tile) + ",") != std::string::npos;
        if (!chosen || !sm90_tile_fits(tile, kparams(0), dev)) { us.push_back(NAN); continue; }
        DSA_CUDA_CHECK(cudaMemset(dout[0], 0xff, hq.size() * 4));
        launch_sm90(tile, kparams(0), dev, s);
        DSA_CUDA_CHECK(cudaStreamSynchronize(s));
        DSA_CUDA_CHECK(cudaMemcpy(got.data(), dout[0], got.size() * 4, cudaMemcpyDeviceToHost));
        if (std::memcmp(got.data(), ref.data(), got.size() * 4) != 0) {
          ok = false;
          bitwise += " MISMATCH:" + sm90_tile_name(tile);
        }
        us.push_back(time_graph(s, std::max(nbuf, 20), [&](int i) { launch_sm90(tile, kparams(i % nbuf), dev, s); }));
      }
      us.push_back(time_graph(s, std::max(nbuf, 20), [&](int i) { launch_generic(kparams(i % nbuf), s); }));
      us.push_back(time_graph(s, std::max(nbuf, 20), [&](int i) { logits_head_gate_cuda(params(i % nbuf), s); }));
      us.push_back(time_graph(s, std::max(nbuf, 20), [&](int) { launch_pdl(empty_kernel, dim3(1), dim3(32), 0, s); }));
      us.push_back(time_graph(s, std::max(nbuf, 20), [&](int i) {
        const int b = i % nbuf;
        launch_pdl(read_probe_kernel, dim3(4 * prop.multiProcessorCount), dim3(512), 0, s,
                     reinterpret_cast<const uint4*>(dx[b]), xbytes / 16, reinterpret_cast<const uint4*>(dw_of(b)),
                     hw.size() * 2 / 16, reinterpret_cast<const uint4*>(dq[b]), hq.size() * 4 / 16,
                     reinterpret_cast<uint4*>(dout[b]), hq.size() * 4 / 16);
      }));
      all_ok = all_ok && ok;
      std::printf("%8ld", T);
      for (double u : us) std::printf(" %12.2f", u);
      std::printf("  %s rel=%.2e %s%s\n", describe_cuda_dispatch(params(0)).substr(0, 64).c_str(), rel,
                  ok ? "ok" : "FAIL", bitwise.c_str());
      std::fflush(stdout);
      if (js) {
        std::fprintf(js, "%s{\"K\": %d, \"H\": %d, \"T\": %ld, \"rel_err\": %.3e, \"ok\": %s, \"us\": {", first_rec ? "" : ",\n",
                     K, H, T, rel, ok ? "true" : "false");
        first_rec = false;
        for (std::size_t i = 0; i < us.size(); ++i) {
          static const char* const kExtra[] = {"generic", "auto", "empty_kernel", "read_probe"};
          const std::size_t n = std::size(kAllSm90Tiles);
          const std::string name = i < n ? sm90_tile_name(kAllSm90Tiles[i]) : kExtra[i - n];
          if (std::isnan(us[i])) std::fprintf(js, "%s\"%s\": null", i ? ", " : "", name.c_str());
          else std::fprintf(js, "%s\"%s\": %.3f", i ? ", " : "", name.c_str(), us[i]);
        }
        std::fprintf(js, "}, \"auto\": \"%s\"}", describe_cuda_dispatch(params(0)).c_str());
      }
      for (int b = 0; b < nbuf; ++b) { cudaFree(dx[b]); cudaFree(dq[b]); cudaFree(dout[b]); }
      for (auto* w : dws) cudaFree(w);
    }
  }
  if (js) { std::fprintf(js, "\n]}\n"); std::fclose(js); }
  std::printf("\n%s\n", all_ok ? "ALL OK" : "SOME CHECKS FAILED");
  return all_ok ? 0 : 1;
}
