"""`python -m dsa_indexer.bench`: checks dsa_indexer's logits_head_gate against a float64 reference,
then times it side by side with what serving engines run today (SGLang's op, torch.mm alone,
DeepGEMM when installed) and the memory/compute floor; writes JSON, Markdown and a PNG plot.
Pieces: _bench_paths (paths, inputs, check), _bench_timing, _bench_first_call, _bench_report."""

import argparse
import math
import os
import sys
import time

import torch

from . import _bench_paths as P
from . import _bench_report as R
from . import _bench_timing as B

DEFAULT_SHAPES = "7168x64,6144x32"
DEFAULT_T_GPU = ",".join(str(2 ** i) for i in range(17))  # 1..65536
DEFAULT_T_CPU = ",".join(str(2 ** i) for i in range(9))  # 1..256: about a minute on 2 cores
EXIT_VALIDATION = 1
EXIT_SETUP = 3


def _int_list(s):
    try:
        vals = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected a comma-separated list of integers, got %r" % s)
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError("expected integers >= 1, got %r" % s)
    return vals


def _shape_list(s):
    shapes = []
    for item in s.split(","):
        try:
            K, H = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError("expected KxH[,KxH...] such as 7168x64, got %r" % s)
        if K < 1 or H < 1:
            raise argparse.ArgumentTypeError("K and H must be >= 1, got %r" % item)
        shapes.append((K, H))
    return shapes


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="python -m dsa_indexer.bench",
        description="Validate dsa_indexer.logits_head_gate against float64, then time it next to "
                    "SGLang's path, torch.mm, DeepGEMM and the floor. Without a GPU: CPU backend "
                    "vs the CPU version of SGLang's path on a shorter T list.")
    ap.add_argument("--T", type=_int_list, default=None,
                    help="token counts, comma-separated (default: 1..65536 powers of two on a "
                         "GPU, 1..256 on the CPU)")
    ap.add_argument("--shapes", type=_shape_list, default=_shape_list(DEFAULT_SHAPES),
                    help="KxH list (default %s: DeepSeek-V3.2 and GLM-5)" % DEFAULT_SHAPES)
    ap.add_argument("--eager", action="store_true",
                    help="time eager calls instead of CUDA-graph replays")
    ap.add_argument("--modes", default=None,
                    help="comma-separated modes among graph,eager (default graph; --eager = eager)")
    ap.add_argument("--first-call", action="store_true",
                    help="also time the first call of each path in fresh processes")
    ap.add_argument("--first-call-T", type=_int_list, default=[1, 4096],
                    help="T values of the first-call measurement, in call order (default 1,4096)")
    ap.add_argument("--overhead", action="store_true",
                    help="also measure eager host overhead per call at T=1")
    ap.add_argument("--skip-latency", action="store_true",
                    help="skip the latency sweep (validation still runs)")
    ap.add_argument("--device", choices=("cuda", "cpu"), default=None,
                    help="default: cuda when available, else cpu")
    ap.add_argument("--out", default=None,
                    help="results folder (default bench/results/<date>_<gpu or cpu>/)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed repeats per point, median reported (default 20 GPU, 5 CPU)")
    ap.add_argument("--min-time", type=float, default=None,
                    help="seconds per repeat to aim at (default 0.002 GPU, 0.02 CPU)")
    ap.add_argument("--rotate-mb", type=float, default=None,
                    help="working set of the rotated input sets in MB (default 3x the GPU's L2, "
                         "64 on the CPU)")
    ap.add_argument("--resident-weight", action="store_true",
                    help="share one weight buffer across the rotated sets (weight hot in L2 at "
                         "small T) instead of rotating it with x and q_scale")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--inject-error", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.modes is None:
        args.modes = ["eager"] if args.eager else ["graph"]
    else:
        args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        bad = [m for m in args.modes if m not in ("graph", "eager")]
        if bad or not args.modes:
            ap.error("--modes takes graph and/or eager, got %r" % args.modes)
    return args


class Progress:
    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self, msg):
        s = int(time.perf_counter() - self.t0)
        print("[%d:%02d] %s" % (s // 60, s % 60, msg), file=sys.stderr, flush=True)


def _library_version():
    import dsa_indexer  # noqa: PLC0415

    for name in ("__version__", "version"):
        v = getattr(dsa_indexer, name, None)
        if callable(v):
            v = v()
        if v:
            return str(v)
    return None


def _fail(msg, code):
    print("\nERROR: " + msg, file=sys.stderr, flush=True)
    return code


def validate(fns, unavailable, shapes, Ts, device, gen, progress, inject_error):
    """Every available scaled path at every (shape, T), against float64; the first failure stops
    the run. A baseline that raises is dropped (marked unavailable, with the error), so one broken
    baseline does not stop an unattended run. Returns (records, None) or (records, failure)."""
    out = []
    for K, H in shapes:
        nhis, ss = P.scales(H)
        progress("validating K=%d H=%d at T=%s against float64"
                 % (K, H, ",".join(map(str, Ts))))
        for T in Ts:
            x, w, q = P.make_inputs(T, K, H, device, gen)
            rows = P.validation_rows(T)
            for p in P.SCALED_PATHS:
                if p not in fns:
                    continue
                try:
                    y = fns[p](x, w, nhis, ss, q)
                except Exception as e:  # noqa: BLE001 (any failure of a path is reported)
                    msg = "%s: %s" % (type(e).__name__, str(e).strip().splitlines()[0][:200])
                    if p.startswith("dsa_indexer"):
                        return out, ("%s K=%d H=%d T=%d on %s raised %s"
                                     % (p, K, H, T, device.type, msg))
                    progress("%s raised at K=%d H=%d T=%d, dropped: %s" % (p, K, H, T, msg))
                    unavailable[p] = "n/a (failed: %s)" % msg
                    del fns[p]
                    continue
                if inject_error and p == "dsa_indexer":
                    y = y * (1 + 1e-3)
                res = P.check_against_float64(y, x, w, q, nhis, ss, rows)
                out.append(dict(path=p, K=K, H=H, T=T, **res))
                if not res["ok"]:
                    return out, ("VALIDATION FAILED: %s K=%d H=%d T=%d on %s: %s (bound of SPEC.md: "
                                 "relative Frobenius error <= %g, every element within %g * "
                                 "sum_k|x*w| * |scales|). Nothing was timed."
                                 % (p, K, H, T, device.type, res["why"], P.REL_FRO_BOUND,
                                    P.ELEM_BOUND))
            del x, w, q
    return out, None


def sweep(fns, args, shapes, Ts, device, gen, ceilings, progress):
    dt = device.type
    records = []
    total = len(shapes) * len(Ts) * len(args.modes)
    done = 0
    for K, H in shapes:
        nhis, ss = P.scales(H)
        for T in Ts:
            set_bytes = T * K * 2 + T * H * 4 + (0 if args.resident_weight else H * K * 2)
            n_sets = int(min(args.max_sets, max(2, math.ceil(args.rotate_bytes / set_bytes))))
            weight = P.make_inputs(1, K, H, device, gen)[1] if args.resident_weight else None
            sets = [P.make_inputs(T, K, H, device, gen, weight) for _ in range(n_sets)]
            nbytes, nflops = P.bytes_moved(T, K, H), P.flops(T, K, H)
            floor = B.floor_us(nbytes, nflops, ceilings)
            ref0 = fns["dsa_indexer"](sets[0][0], sets[0][1], nhis, ss, sets[0][2])
            for mode in args.modes:
                rec = {"K": K, "H": H, "T": T, "mode": mode}
                rec.update({p: None for p in P.PATHS})
                rec.update({"floor": floor, "bytes": nbytes, "flops": nflops,
                            "rotating_sets": n_sets, "detail": {}})
                for p in P.PATHS:
                    if p not in fns:
                        continue
                    fn = fns[p]

                    def call(i, fn=fn):
                        x, w, q = sets[i]
                        return fn(x, w, nhis, ss, q)

                    try:
                        r = B.time_per_call(call, n_sets, device_type=dt, mode=mode,
                                            repeats=args.repeats, target_s=args.min_time,
                                            max_calls=args.max_calls)
                    except Exception as e:  # noqa: BLE001 (recorded; the run goes on)
                        msg = "%s: %s" % (type(e).__name__, str(e).strip().splitlines()[0][:200])
                        progress("%s failed (%s K=%d H=%d T=%d): %s" % (p, mode, K, H, T, msg))
                        rec["detail"][p] = {"error": msg}
                        if dt == "cuda":
                            torch.cuda.synchronize()
                        continue
                    # static_weight changes when the weight is read, never the result.
                    if p.startswith("dsa_indexer") and not torch.equal(r["first_out"], ref0):
                        return records, ("%s K=%d H=%d T=%d: the output of a timed %s call "
                                         "differs bitwise from an earlier dsa_indexer call on the "
                                         "same inputs (SPEC.md: deterministic)" % (p, K, H, T, mode))
                    rec[p] = r["us"]
                    rec["detail"][p] = {k: v for k, v in r.items() if k != "first_out"}
                    del r
                records.append(rec)
                done += 1
                parts = ["%s %.2f us" % (p, rec[p]) for p in P.PATHS if rec[p] is not None]
                progress("[%d/%d] %s K=%d H=%d T=%d: %s, floor %.2f us" % (
                    done, total, mode, K, H, T, ", ".join(parts), floor))
            del sets, weight, ref0
            if dt == "cuda":
                torch.cuda.empty_cache()
    return records, None


def overhead(fns, args, device, gen, progress):
    import dsa_indexer  # noqa: PLC0415

    K, H = args.shapes[0]
    nhis, ss = P.scales(H)
    x, w, q = P.make_inputs(1, K, H, device, gen)
    if P.mm_out_dtype_supported(device.type):
        mm = lambda x, w, a, b, q: torch.mm(x, w.t(), out_dtype=torch.float32)  # noqa: E731
    else:
        mm = fns["torch.mm"]
    entries = [
        ("dsa_indexer (torch.ops.dsa_indexer.logits_head_gate)", fns["dsa_indexer"]),
        ("dsa_indexer.logits_head_gate (Python entry point)", dsa_indexer.logits_head_gate),
        ("torch.mm alone", mm),
        ("sglang (FRAGMENT-registered op)", fns.get("sglang")),
        ("sglang as a Python @torch.library.custom_op", P.get_path("sglang_custom_op",
                                                                    device.type)),
    ]
    entries = [(name, fn) for name, fn in entries if fn is not None]
    cuda = device.type == "cuda"
    n_calls, repeats = (2000, 7) if cuda else (200, 3)
    res = {"K": K, "H": H, "T": 1, "calls": n_calls, "repeats": repeats, "paths": []}
    for name, fn in entries:
        progress("overhead: %s, %d calls x %d" % (name, n_calls, repeats))
        r = B.measure_overhead(fn, (x, w, nhis, ss, q), device.type, n_calls=n_calls,
                               repeats=repeats)
        res["paths"].append(dict(path=name, **r))
    if cuda:
        # First entry per leading word: "sglang" is the FRAGMENT-registered op, not the custom_op
        # variant listed after it.
        host = {}
        for e in res["paths"]:
            host.setdefault(e["path"].split(" ")[0], e["host_us"])
        ours = res["paths"][0]["host_us"]
        res["verdict"] = ("dsa_indexer eager host overhead %.2f us per call: target <= 12 us %s "
                          "(torch.mm alone %.2f us, sglang op %.2f us, Python custom_op %.2f us)"
                          % (ours, "met" if ours <= 12 else "NOT met", host["torch.mm"],
                             host.get("sglang", float("nan")), res["paths"][-1]["host_us"]))
    return res


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    progress = Progress()
    if args.device == "cuda" and not torch.cuda.is_available():
        return _fail("--device cuda given but torch sees no CUDA device", EXIT_SETUP)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    notes = []
    if not cuda:
        notes.append("CPU run%s: the CPU backend against the CPU version of the sglang path, eager "
                     "calls timed by wall clock. The floor uses torch's own CPU copy and GEMM "
                     "rates, no true ceilings: over 100%% of floor can happen."
                     % (" (no GPU; CUDA graphs need one)" if "graph" in args.modes else ""))
        args.modes = ["eager"]
    Ts = args.T or [int(t) for t in (DEFAULT_T_GPU if cuda else DEFAULT_T_CPU).split(",")]
    args.repeats = args.repeats or (20 if cuda else 5)
    args.min_time = args.min_time or (0.002 if cuda else 0.02)
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) if cuda else 0
    l2 = l2 or 60 * 2 ** 20
    args.rotate_bytes = (args.rotate_mb * 2 ** 20 if args.rotate_mb is not None
                         else (3 * l2 if cuda else 64 * 2 ** 20))
    args.max_sets = 256
    args.max_calls = 512 if cuda else 1000

    try:
        version = _library_version()
    except Exception as e:  # the extension failed to load: say so and how to build it
        return _fail("cannot import dsa_indexer (%s: %s). Build and install it first, from the "
                     "repository root: pip install --no-build-isolation ." % (type(e).__name__, e),
                     EXIT_SETUP)
    env = R.environment(device, version)
    fns, unavailable = {}, {}
    for p in P.PATHS:
        try:
            fns[p] = P.get_path(p, device.type)
        except P.PathUnavailable as e:
            unavailable[p] = str(e)
    progress("dsa_indexer %s, torch %s, %s; paths: %s%s" % (
        version, torch.__version__, env["gpu"] or "CPU", ", ".join(fns),
        "".join("; %s %s" % kv for kv in unavailable.items())))
    gen = torch.Generator(device=device).manual_seed(args.seed)

    result = {
        "schema": "dsa_indexer.bench/1",
        "env": env,
        "deep_gemm": P.deep_gemm_version(),
        "paths": list(P.PATHS),
        "unavailable": unavailable,
        "shapes": [list(s) for s in args.shapes],
        "T": Ts,
        "notes": notes,
    }

    # 1. Correctness first: nothing is timed on a machine where the library is wrong.
    result["validation"], failure = validate(fns, unavailable, args.shapes, Ts, device, gen,
                                             progress, args.inject_error)
    if failure:
        return _fail(failure, EXIT_VALIDATION)
    worst = max(v["max_err_over_bound"] for v in result["validation"] if v["path"] == "dsa_indexer")
    notes.append("Validated before timing: every path that computes the head gate, at every shape "
                 "and T, against a float64 reference with the SPEC.md bound (all rows up to "
                 "T=1024; above, 512 rows: the first, the last and random ones). dsa_indexer's "
                 "worst element used %.1f%% of its allowed error." % (100 * worst))

    # 2. Ceilings behind the floor, measured now on this machine.
    progress("measuring the copy bandwidth and matmul rate ceilings")
    ceilings = B.measure_ceilings(device, repeats=max(5, args.repeats // 2))
    result["ceilings"] = ceilings
    notes.append("floor = max(bytes / copy bandwidth, FLOPs / matmul rate), bytes = x + weight + "
                 "q_scale + output once each; measured in this run: copy %.0f GB/s (%s), matmul "
                 "%.1f TFLOP/s (%s)." % (ceilings["copy_bytes_per_s"] / 1e9,
                                         ceilings["copy_method"],
                                         ceilings["matmul_flop_per_s"] / 1e12,
                                         ceilings["matmul_method"]))
    notes.append("sglang = %s, * n_heads_inv_sqrt, .unsqueeze(-1) * q_scale * softmax_scale, "
                 "registered as SGLang does (torch.library.Library FRAGMENT: define, impl, fake); "
                 "torch.mm = that GEMM alone; dsa_indexer = torch.ops.dsa_indexer."
                 "logits_head_gate (functional, as engines call it)." % P.mm_description(device.type))
    if "deep_gemm" in unavailable:
        notes.append("deep_gemm: %s." % unavailable["deep_gemm"])
    else:
        notes.append("deep_gemm = deep_gemm.bf16_gemm_nt (%s) + the same scaling."
                     % result["deep_gemm"])
    rot = ("x, q_scale" if args.resident_weight else "x, weight, q_scale")
    result["timing"] = {
        "modes": args.modes, "repeats": args.repeats, "target_s_per_repeat": args.min_time,
        "rotate_bytes": args.rotate_bytes, "resident_weight": args.resident_weight,
        "method": {m: {
            "graph": "N calls captured in one CUDA graph after warm-up, the graph replayed "
                     "`repeats` times between CUDA events; us per call = median replay / N",
            "eager": ("CUDA events" if cuda else "wall clock") + " around loops of N eager "
                     "calls; us per call = median loop / N",
        }[m] for m in args.modes},
    }
    notes.append("Timing: median over %d repeats; calls rotate over input sets (%s; outputs "
                 "allocated by each call, as engines do) whose total size is at least %.0f MB%s, "
                 "so inputs come from memory, not cache.%s" % (
                     args.repeats, rot, args.rotate_bytes / 2 ** 20,
                     " (3x the %.0f MB L2)" % (l2 / 2 ** 20) if cuda and args.rotate_mb is None
                     else "",
                     " The weight stays one buffer (--resident-weight): at small T it is hot in "
                     "L2, unlike in a forward pass where other layers' weights evict it."
                     if args.resident_weight else
                     " The weight rotates too: in a forward pass the other layers' weights evict "
                     "it between two calls of one layer."))

    # 3. First calls in fresh processes (before the sweep, while this process holds little memory).
    if args.first_call:
        from ._bench_first_call import run_first_call  # noqa: PLC0415

        if cuda:
            torch.cuda.empty_cache()
        fc_paths = [p for p in ("dsa_indexer", "sglang", "deep_gemm") if p in fns]
        result["first_call"] = run_first_call(fc_paths, args.shapes, args.first_call_T,
                                              device.type, progress=progress)
        for res in result["first_call"]:
            if "error" in res:
                progress("first call of %s failed: %s" % (res["path"], res["error"]))

    # 4. The sweep.
    result["records"] = []
    if not args.skip_latency:
        result["records"], failure = sweep(fns, args, args.shapes, Ts, device, gen, ceilings,
                                           progress)
        if failure:
            return _fail(failure, EXIT_VALIDATION)

    # 5. Eager host overhead at T=1.
    if args.overhead:
        result["overhead"] = overhead(fns, args, device, gen, progress)

    # 6. Outputs.
    out_dir = args.out or R.default_out_dir(env)
    os.makedirs(out_dir, exist_ok=True)
    R.write_json(result, os.path.join(out_dir, "results.json"))
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(R.text_report(result, markdown=True))
        if result["records"]:
            f.write("\n![latency vs T](latency.png)\n")
    written = ["results.json", "results.md"]
    if result["records"]:
        try:
            R.plot(result, os.path.join(out_dir, "latency.png"))
            written.append("latency.png")
        except ImportError:
            progress("matplotlib is not installed: no plot (pip install matplotlib)")
    print(R.text_report(result), flush=True)
    progress("wrote %s in %s" % (", ".join(written), out_dir))
    ours_failed = [r for r in result["records"]
                   if any("error" in r["detail"].get(p, {}) for p in ("dsa_indexer", "dsa_indexer.static"))]
    if ours_failed:
        return _fail("dsa_indexer failed at %d timed points (errors in results.json)"
                     % len(ours_failed), EXIT_VALIDATION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
