"""Timing for `python -m dsa_indexer.bench`: one helper that times a call over rotating input sets,
in CUDA-graph replay or eager mode (CUDA events; wall clock on the CPU), median over repeats, in
microseconds per call; plus the copy and matmul ceilings behind the floor, and eager host overhead."""

import math
import statistics
import time

import torch


def sync(device_type):
    if device_type == "cuda":
        torch.cuda.synchronize()


class Clock:
    """Elapsed seconds of a region of queued work: CUDA events on the GPU, wall clock on the CPU
    (whose calls block until done)."""

    def __init__(self, device_type):
        self.cuda = device_type == "cuda"

    def start(self):
        if self.cuda:
            self._a = torch.cuda.Event(enable_timing=True)
            self._b = torch.cuda.Event(enable_timing=True)
            self._a.record()
        else:
            self._t = time.perf_counter()

    def stop(self):
        """Returns a thunk giving the elapsed seconds (so many regions can be queued first)."""
        if self.cuda:
            a, b = self._a, self._b
            b.record()
            return lambda: a.elapsed_time(b) * 1e-3
        dt = time.perf_counter() - self._t
        return lambda: dt


_CAPTURE_STREAM = []


def _capture_stream():
    if not _CAPTURE_STREAM:
        _CAPTURE_STREAM.append(torch.cuda.Stream())
    return _CAPTURE_STREAM[0]


def _estimate_s(fn, n_sets, device_type, n=3):
    fn(0)  # first call: library init, autotuning where a path has it
    sync(device_type)
    clock = Clock(device_type)
    clock.start()
    for i in range(n):
        fn((i + 1) % n_sets)
    get = clock.stop()
    sync(device_type)
    return max(get() / n, 1e-7)


def time_per_call(fn, n_sets, *, device_type, mode, repeats, target_s, max_calls):
    """Median microseconds per call of fn(i) (i = the input set to use, rotating over n_sets sets).

    mode "graph": N calls are captured in one CUDA graph (after warm-up on a side stream) and the
    graph is replayed `repeats` times, each replay between two CUDA events; N >= n_sets, sized so a
    replay lasts about target_s. mode "eager": events (wall clock on the CPU) around loops of N
    calls. Returns dict(us, calls, repeats, min_us, max_us, first_out) where first_out is the
    output of set 0 from the timed runs (the last graph replay in graph mode)."""
    est = _estimate_s(fn, n_sets, device_type)
    calls = int(min(max_calls, max(n_sets, math.ceil(target_s / est))))
    calls = max(calls, 1)
    clock = Clock(device_type)
    samples = []
    if mode == "graph":
        if device_type != "cuda":
            raise ValueError("graph mode needs CUDA")
        # Warm-up and capture on one side stream, so that per-stream state (cuBLAS workspaces)
        # exists before capture, as torch.cuda.graph's documentation prescribes.
        side = _capture_stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for i in range(min(calls, 2 * n_sets, 8)):
                fn(i % n_sets)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            first_out = fn(0)
            for i in range(1, calls):
                fn(i % n_sets)
        graph.replay()  # warm replay (uploads the graph)
        torch.cuda.synchronize()
        for _ in range(repeats):
            clock.start()
            graph.replay()
            samples.append(clock.stop())
        torch.cuda.synchronize()
        first_out = first_out.clone()  # out of the graph's private pool before the graph goes
        del graph
    elif mode == "eager":
        first_out = None
        for _ in range(repeats):
            sync(device_type)
            clock.start()
            out = fn(0)
            for i in range(1, calls):
                fn(i % n_sets)
            samples.append(clock.stop())
            first_out = out
        sync(device_type)
    else:
        raise ValueError("mode must be 'graph' or 'eager'")
    per_call = [s() * 1e6 / calls for s in samples]
    return {"us": statistics.median(per_call), "calls": calls, "repeats": repeats,
            "min_us": min(per_call), "max_us": max(per_call), "first_out": first_out}


def measure_ceilings(device, *, repeats):
    """Copy bandwidth (bytes read + written per second) of a large same-device copy and the bf16
    matmul rate (FLOP/s) of a large torch.mm on random data, both timed like the paths (eager),
    taking the best repeat: a ceiling is the most the machine was seen to do. On the CPU the
    matmul rate is the better of bf16 and fp32 (CPUs without bf16 units run fp32 faster); torch's
    CPU GEMM is no true ceiling there, so a CPU floor can be beaten (over 100% of floor)."""
    dt = device.type
    if dt == "cuda":
        n_copy, mm_n, target = 1 << 30, 8192, 0.02
    else:
        n_copy, mm_n, target = 1 << 26, 1536, 0.05
    src = torch.empty(n_copy, dtype=torch.uint8, device=device).random_(0, 255)
    dst = torch.empty_like(src)
    r = time_per_call(lambda i: dst.copy_(src), 1, device_type=dt, mode="eager",
                      repeats=repeats, target_s=target, max_calls=50)
    copy_Bps = 2 * n_copy / (r["min_us"] * 1e-6)
    del src, dst
    rates = {}
    for dtype in ((torch.bfloat16,) if dt == "cuda" else (torch.bfloat16, torch.float32)):
        a = torch.randn(mm_n, mm_n, device=device, dtype=dtype)
        b = torch.randn(mm_n, mm_n, device=device, dtype=dtype)
        r = time_per_call(lambda i: torch.mm(a, b), 1, device_type=dt, mode="eager",
                          repeats=repeats, target_s=target, max_calls=50)
        rates[str(dtype).replace("torch.", "")] = 2 * mm_n ** 3 / (r["min_us"] * 1e-6)
        del a, b
    if dt == "cuda":
        torch.cuda.empty_cache()
    return {
        "copy_bytes_per_s": copy_Bps,
        "copy_method": "%s copy_ of %d MiB, bytes read + written, best of %d" % (
            dt, n_copy >> 20, repeats),
        "matmul_flop_per_s": max(rates.values()),
        "matmul_flop_per_s_by_dtype": rates,
        "matmul_method": "torch.mm of two %dx%d random matrices (%s), best of %d%s" % (
            mm_n, mm_n, ", ".join(rates), repeats, "; the faster dtype" if len(rates) > 1 else ""),
    }


def floor_us(nbytes, nflops, ceilings):
    return max(nbytes / ceilings["copy_bytes_per_s"], nflops / ceilings["matmul_flop_per_s"]) * 1e6


def measure_overhead(fn, args, device_type, *, n_calls, repeats):
    """Back-to-back eager calls on the same inputs: host seconds to issue them, wall clock including
    the final synchronize, and the CUDA-event time across them (None on the CPU); medians over
    repeats, in microseconds per call."""
    for _ in range(min(n_calls, 50)):
        fn(*args)
    sync(device_type)
    host, wall, event = [], [], []
    for _ in range(repeats):
        sync(device_type)
        clock = Clock(device_type)
        t0 = time.perf_counter()
        clock.start()
        for _ in range(n_calls):
            fn(*args)
        t1 = time.perf_counter()
        get = clock.stop()
        sync(device_type)
        t2 = time.perf_counter()
        host.append((t1 - t0) * 1e6 / n_calls)
        wall.append((t2 - t0) * 1e6 / n_calls)
        if device_type == "cuda":
            event.append(get() * 1e6 / n_calls)
    return {"host_us": statistics.median(host), "wall_us": statistics.median(wall),
            "event_us": statistics.median(event) if event else None,
            "calls": n_calls, "repeats": repeats}
