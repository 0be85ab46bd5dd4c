// Dev tool (build with -DDSA_INDEXER_DEV_TIMELINE=ON): where the time of one sm_90a tile goes, CTA
// by CTA. Captures `calls` back-to-back launches of a tile in one CUDA graph (rotating inputs, as the
// sweep), each launch recording into its own timeline (src/cuda/sm90_kernel.cuh: entry,
// past griddepcontrol.wait, weight slice landed, each wave's load issued and its data seen, last
// finish, exit), replays it, and prints per call when its CTAs started, waited and ended, and for one
// call in the middle of the sequence each wave's issue and arrival times and load latency over the
// CTAs. --csv writes the raw events of the last three calls (call, cta, event, globaltimer ns,
// clock64) for analysis elsewhere. A build with -DCMAKE_CUDA_FLAGS=-DDSA_TIMELINE_WAVES records the
// steps of each prefill wave instead of the per-wave load events (the tables below then mean
// nothing; dev/cuda/timeline_waves.py reads the CSV).
// Run: ./timeline --tile T64H64tma [--shape 7168x64] [--T 64,2048] [--calls 20] [--rotate-weight]
//      [--static-weight] [--csv prefix]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/check.h"
#include "cuda/cuda_check.h"
#include "cuda/sm90_logits_head_gate.h"
#include "dev_timing.h"
#include "dsa_indexer/logits_head_gate.h"

using namespace dsa_indexer;
using namespace dsa_indexer::cuda;
using dsa_dev::parse_list;

namespace {

constexpr int kEvents = 256;  // per CTA, as kTlEvents in the kernel
constexpr int kEnd = 248;     // kTlEnd: the last tile's end, step by step (kEnd + 0..3)
constexpr int kWaves = (kEnd - 8) / 2;
constexpr int kMaxCtas = 2048;
constexpr std::size_t kCallWords = static_cast<std::size_t>(kMaxCtas) * 2 * kEvents;

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * (v.size() - 1) + 0.5)];
}

// One CTA's events of one call, times in ns of the global timer.
struct Cta {
  unsigned long long gt[kEvents], clk[kEvents];
  bool has(int e) const { return gt[e] != 0; }
};

}  // namespace

int main(int argc, char** argv) {
#ifndef DSA_TIMELINE
  (void)argc;
  (void)argv;
  std::fprintf(stderr, "timeline: the library was built without DSA_INDEXER_DEV_TIMELINE\n");
  return 2;
#else
  long K = 7168, H = 64;
  std::vector<long> Ts = {64, 2048};
  std::string tile_label = "T64H64tma";
  const char* csv = nullptr;
  int calls = 20;
  bool rotate_weight = false, static_weight = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--rotate-weight")) { rotate_weight = true; continue; }
    if (!std::strcmp(argv[i], "--static-weight")) { static_weight = true; continue; }
    if (i + 1 >= argc) break;
    if (!std::strcmp(argv[i], "--shape")) { const auto v = parse_list(argv[i + 1]); K = v.at(0); H = v.at(1); }
    if (!std::strcmp(argv[i], "--T")) Ts = parse_list(argv[i + 1]);
    if (!std::strcmp(argv[i], "--tile")) tile_label = argv[i + 1];
    if (!std::strcmp(argv[i], "--calls")) calls = std::max(4, std::atoi(argv[i + 1]));
    if (!std::strcmp(argv[i], "--csv")) csv = argv[i + 1];
    ++i;
  }
  const Sm90Tile* found = std::find_if(std::begin(kAllSm90Tiles), std::end(kAllSm90Tiles),
                                       [&](Sm90Tile t) { return sm90_tile_label(t) == tile_label; });
  if (found == std::end(kAllSm90Tiles)) {
    std::fprintf(stderr, "timeline: no tile labelled %s\n", tile_label.c_str());
    return 2;
  }
  const Sm90Tile tile = *found;
  int dev = 0;
  DSA_CUDA_CHECK(cudaSetDevice(dev));
  cudaStream_t s;
  DSA_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  unsigned long long* d_tl = nullptr;
  DSA_CUDA_CHECK(cudaMalloc(&d_tl, kCallWords * calls * sizeof(unsigned long long)));
  std::vector<unsigned long long> h_tl(kCallWords * calls);
  std::printf("tile %s, K = %ld, H = %ld, %d calls per graph; weight %s%s\n", sm90_tile_name(tile).c_str(), K, H,
              calls, rotate_weight ? "rotated with x (from HBM)" : "one buffer (in L2)",
              static_weight ? ", static (copied before the wait)" : "");

  for (long T : Ts) {
    // Inputs as the sweep's: enough buffers to rotate x out of L2; values do not matter here.
    const std::size_t xbytes = static_cast<std::size_t>(T) * K * 2, wbytes = static_cast<std::size_t>(H) * K * 2;
    const int nbuf = static_cast<int>(std::clamp<std::size_t>((256u << 20) / xbytes + 1, 1, 32));
    std::vector<std::uint16_t*> dx(nbuf), dw(rotate_weight ? nbuf : 1);
    std::vector<float*> dq(nbuf), dout(nbuf);
    for (int b = 0; b < nbuf; ++b) {
      DSA_CUDA_CHECK(cudaMalloc(&dx[b], xbytes));
      DSA_CUDA_CHECK(cudaMemset(dx[b], 0x3c, xbytes));
      DSA_CUDA_CHECK(cudaMalloc(&dq[b], T * H * 4));
      DSA_CUDA_CHECK(cudaMemset(dq[b], 0, T * H * 4));
      DSA_CUDA_CHECK(cudaMalloc(&dout[b], T * H * 4));
    }
    for (auto& w : dw) {
      DSA_CUDA_CHECK(cudaMalloc(&w, wbytes));
      DSA_CUDA_CHECK(cudaMemset(w, 0x3c, wbytes));
    }
    const auto kparams = [&](int i) {
      const int b = i % nbuf;
      KernelParams k{};
      k.x = dx[b]; k.w = dw[b % dw.size()]; k.q_scale = dq[b]; k.out = dout[b];
      k.ldx = K; k.ldw = K; k.qs_t = H; k.qs_h = 1; k.out_t = H; k.out_h = 1;
      k.T = T; k.H = static_cast<int>(H); k.K = static_cast<int>(K); k.G = static_cast<int>(group_len(K));
      k.n_heads_inv_sqrt = 0.125f; k.softmax_scale = 0.0883883f;
      k.static_weight = static_weight;
      k.timeline = d_tl + kCallWords * i;
      return k;
    };
    if (!sm90_tile_fits(tile, kparams(0), dev)) {
      std::printf("\nT = %ld: tile does not fit\n", T);
      continue;
    }
    // Not dev_timing.h's time_graph: the timelines are cleared before the last replay, inside the
    // sequence of replays, so that what is read back is that replay's alone.
    cudaGraph_t g;
    cudaGraphExec_t ge;
    DSA_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < calls; ++i) launch_sm90(tile, kparams(i), dev, s);
    DSA_CUDA_CHECK(cudaStreamEndCapture(s, &g));
    DSA_CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t ea, eb;
    DSA_CUDA_CHECK(cudaEventCreate(&ea));
    DSA_CUDA_CHECK(cudaEventCreate(&eb));
    std::vector<float> ms;
    for (int r = 0; r < 6; ++r) {
      if (r == 5) DSA_CUDA_CHECK(cudaMemsetAsync(d_tl, 0, h_tl.size() * sizeof(unsigned long long), s));
      DSA_CUDA_CHECK(cudaEventRecord(ea, s));
      DSA_CUDA_CHECK(cudaGraphLaunch(ge, s));
      DSA_CUDA_CHECK(cudaEventRecord(eb, s));
      DSA_CUDA_CHECK(cudaEventSynchronize(eb));
      float m;
      DSA_CUDA_CHECK(cudaEventElapsedTime(&m, ea, eb));
      if (r >= 1) ms.push_back(m * 1000.f / calls);
    }
    DSA_CUDA_CHECK(cudaMemcpy(h_tl.data(), d_tl, h_tl.size() * sizeof(unsigned long long), cudaMemcpyDeviceToHost));
    const auto cta_of = [&](int call, int b) {
      return reinterpret_cast<const unsigned long long*>(h_tl.data() + kCallWords * call + 2ull * kEvents * b);
    };
    // Unpack: CTA b of call i.
    std::vector<std::vector<Cta>> all(calls);
    for (int i = 0; i < calls; ++i) {
      for (int b = 0; b < kMaxCtas; ++b) {
        const unsigned long long* w = cta_of(i, b);
        if (w[0] == 0) break;  // CTAs are numbered densely
        Cta c;
        for (int e = 0; e < kEvents; ++e) c.gt[e] = w[2 * e], c.clk[e] = w[2 * e + 1];
        all[i].push_back(c);
      }
    }
    const unsigned long long t_base = all[0].empty() ? 0 : std::min_element(all[0].begin(), all[0].end(), [](const Cta& a, const Cta& b) {
                                                             return a.gt[0] < b.gt[0];
                                                           })->gt[0];
    const auto us = [&](unsigned long long t) { return (static_cast<double>(t) - static_cast<double>(t_base)) / 1000.0; };
    // Resolution of the global timer: the smallest non-zero step between a CTA's successive waves.
    unsigned long long res = ~0ull;
    for (const auto& c : all[calls / 2])
      for (int e = 9; e + 2 < kEvents; e += 2)
        if (c.has(e) && c.has(e + 2) && c.gt[e + 2] > c.gt[e]) res = std::min(res, c.gt[e + 2] - c.gt[e]);
    std::printf("\nT = %ld: %.2f us per call (median of 5 replays, instrumented); %zu CTAs; globaltimer step >= %llu ns\n", T,
                quantile(std::vector<double>(ms.begin(), ms.end()), 0.5), all[0].size(), res);
    std::printf("%5s %9s %9s %9s %9s %9s %9s %9s %9s   (us from call 0's first entry)\n", "call", "entry0", "entry1",
                "wait0", "wait1", "w_land50", "w_land1", "exit50", "exit1");
    for (int i = 0; i < calls; ++i) {
      std::vector<double> entry, wait, wland, exit;
      for (const auto& c : all[i]) {
        entry.push_back(us(c.gt[0]));
        wait.push_back(us(c.gt[1]));
        if (c.has(2)) wland.push_back(us(c.gt[2]));
        exit.push_back(us(c.gt[3]));
      }
      std::printf("%5d %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f\n", i, quantile(entry, 0), quantile(entry, 1),
                  quantile(wait, 0), quantile(wait, 1), quantile(wland, 0.5), quantile(wland, 1), quantile(exit, 0.5),
                  quantile(exit, 1));
    }
    // One call in the middle: every wave over the CTAs (time from this call's first wait).
    const int mid = calls - 2;
    double wait0 = 1e300;
    for (const auto& c : all[mid]) wait0 = std::min(wait0, us(c.gt[1]));
    std::printf("call %d, from its first wait (us): wave, CTAs, issued p50 / max, data seen p50 / max, latency p50 / max\n", mid);
    for (int sw = 0; sw < kWaves; ++sw) {
      std::vector<double> iss, seen, lat;
      for (const auto& c : all[mid]) {
        if (!c.has(9 + 2 * sw)) continue;
        seen.push_back(us(c.gt[9 + 2 * sw]) - wait0);
        if (c.has(8 + 2 * sw)) {
          iss.push_back(us(c.gt[8 + 2 * sw]) - wait0);
          lat.push_back((static_cast<double>(c.gt[9 + 2 * sw]) - static_cast<double>(c.gt[8 + 2 * sw])) / 1000.0);
        }
      }
      if (seen.empty()) break;
      std::printf("%5d %5zu %8.2f %8.2f %8.2f %8.2f %8.2f %8.2f\n", sw, seen.size(), quantile(iss, 0.5), quantile(iss, 1),
                  quantile(seen, 0.5), quantile(seen, 1), quantile(lat, 0.5), quantile(lat, 1));
    }
    std::vector<double> fin, ex;
    for (const auto& c : all[mid]) fin.push_back(us(c.gt[5]) - wait0), ex.push_back(us(c.gt[3]) - wait0);
    std::printf("last finish begins p50 / max %.2f / %.2f, exit p50 / max %.2f / %.2f\n", quantile(fin, 0.5),
                quantile(fin, 1), quantile(ex, 0.5), quantile(ex, 1));
    // The end of each CTA's last tile, step by step (prefill tiles record the steps): when, and how
    // many clock cycles after the CTA's last data.
    const struct { int e; const char* what; } steps[] = {
        {kEnd, "last wave's MMAs complete"}, {kEnd + 1, "end_tile: cluster barrier passed"},
        {kEnd + 2, "end_tile: sums pushed"},  {5, "last finish begins"},
        {kEnd + 3, "finish: inbox full"},     {3, "exit"}};
    std::printf("end of the last tile (call %d): step, CTAs, us from the first wait p50 / max, cycles after the CTA's last data p50 / max\n", mid);
    for (const auto& st : steps) {
      std::vector<double> at, after;
      for (const auto& c : all[mid]) {
        int last = -1;
        for (int sw = 0; sw < kWaves; ++sw)
          if (c.has(9 + 2 * sw)) last = sw;
        if (!c.has(st.e) || last < 0) continue;
        at.push_back(us(c.gt[st.e]) - wait0);
        after.push_back(static_cast<double>(c.clk[st.e]) - static_cast<double>(c.clk[9 + 2 * last]));
      }
      if (at.empty()) continue;
      std::printf("  %-36s %5zu %8.2f %8.2f %8.0f %8.0f\n", st.what, at.size(), quantile(at, 0.5), quantile(at, 1),
                  quantile(after, 0.5), quantile(after, 1));
    }
    if (csv) {
      const std::string path = std::string(csv) + "_T" + std::to_string(T) + ".csv";
      FILE* f = std::fopen(path.c_str(), "w");
      DSA_CHECK(f != nullptr, "cannot write " << path);
      std::fprintf(f, "call,cta,event,globaltimer_ns,clock64\n");
      for (int i = std::max(0, calls - 3); i < calls; ++i)
        for (std::size_t b = 0; b < all[i].size(); ++b)
          for (int e = 0; e < kEvents; ++e)
            if (all[i][b].has(e) || e == 4)
              std::fprintf(f, "%d,%zu,%d,%llu,%llu\n", i, b, e, all[i][b].gt[e], all[i][b].clk[e]);
      std::fclose(f);
    }
    std::fflush(stdout);
    DSA_CUDA_CHECK(cudaEventDestroy(ea));
    DSA_CUDA_CHECK(cudaEventDestroy(eb));
    DSA_CUDA_CHECK(cudaGraphExecDestroy(ge));
    DSA_CUDA_CHECK(cudaGraphDestroy(g));
    for (int b = 0; b < nbuf; ++b) { cudaFree(dx[b]); cudaFree(dq[b]); cudaFree(dout[b]); }
    for (auto* w : dw) cudaFree(w);
  }
  cudaFree(d_tl);
  return 0;
#endif
}
