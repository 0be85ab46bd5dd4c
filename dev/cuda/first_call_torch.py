"""Dev tool: the PyTorch operator's first call in a fresh process, taken apart (issue 5's warm-up
target, beside dev/cuda/first_call, which does the same for the C++ entry point).

Run once per measurement, each run a new process (`python dev/cuda/first_call_torch.py MODE`):
  plain   first call of dsa_indexer.logits_head_gate at T = 1 (DeepSeek shape), as the benchmark's
          worker times it (wall clock around the call and a synchronize), then the second call;
  cpu     the same, after a first call on CPU tensors (the dispatcher and the Python binding warm,
          no CUDA work): what is left is the CUDA side;
  alloc   the same, after allocating a tensor of the output's size on the GPU: the caching
          allocator's part;
  empty   the same, after a call at T = 0 on CUDA tensors (argument checks and dispatch, no launch).
Prints one line: mode, import time, the warm-up step's time and the first and second calls' times.
"""

import sys
import time


def main(mode):
    t = time.perf_counter
    import torch

    torch.cuda.init()
    torch.zeros(1, device="cuda")
    T, K, H = 1, 7168, 64
    gen = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(T, K, device="cuda", dtype=torch.bfloat16, generator=gen)
    w = torch.randn(H, K, device="cuda", dtype=torch.bfloat16, generator=gen)
    q = torch.rand(T, H, 1, device="cuda", generator=gen)
    torch.cuda.synchronize()
    a = t()
    import dsa_indexer

    import_ms = (t() - a) * 1e3
    scales = (H ** -0.5, 128 ** -0.5)
    pre_ms = 0.0
    a = t()
    if mode == "cpu":
        dsa_indexer.logits_head_gate(x.cpu(), w.cpu(), *scales, q.cpu())
    elif mode == "alloc":
        torch.empty(T, H, 1, device="cuda")
        torch.cuda.synchronize()
    elif mode == "empty":
        dsa_indexer.logits_head_gate(x[:0], w, *scales, q[:0])
        torch.cuda.synchronize()
    elif mode != "plain":
        raise SystemExit("unknown mode %r" % mode)
    pre_ms = (t() - a) * 1e3

    def call():
        a = t()
        dsa_indexer.logits_head_gate(x, w, *scales, q)
        torch.cuda.synchronize()
        return (t() - a) * 1e3

    first, second = call(), call()
    print("%-6s import %.2f ms | before %.3f ms | first call %.3f ms | second %.3f ms"
          % (mode, import_ms, pre_ms, first, second), flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "plain")
