"""First-call (warm-up) measurement of `python -m dsa_indexer.bench --first-call`. run_first_call()
starts this file as a script in fresh processes, one per (path, shape); the worker times the first
call of the path at each T of the list, then steady-state calls, and prints one JSON line."""

import json
import os
import subprocess
import sys
import tempfile
import time

_HERE = os.path.dirname(os.path.abspath(__file__))


def _load_paths_module():
    # By file path, so that the package (and its extension) is imported only by the
    # dsa_indexer path itself, and the baselines' processes never load it.
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("_dsa_bench_paths",
                                                  os.path.join(_HERE, "_bench_paths.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _worker(path, device_type, K, H, Ts, n_steady):
    t_start = time.perf_counter()
    import torch  # noqa: PLC0415

    t_torch = time.perf_counter()
    device = torch.device(device_type)
    if device_type == "cuda":
        torch.cuda.init()
        torch.zeros(1, device=device)
    paths = _load_paths_module()
    gen = torch.Generator(device=device).manual_seed(1)
    n_heads_inv_sqrt, softmax_scale = paths.scales(H)
    weight = None
    inputs = []
    for T in Ts:
        x, weight, q = paths.make_inputs(T, K, H, device, gen, weight)
        inputs.append((x, weight, q))
    if device_type == "cuda":
        torch.cuda.synchronize()

    def timed(x, w, q):
        t0 = time.perf_counter()
        fn(x, w, n_heads_inv_sqrt, softmax_scale, q)
        if device_type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    fn = paths.get_path(path, device_type)  # imports dsa_indexer / deep_gemm, registers the op
    setup_s = time.perf_counter() - t0
    out = {"path": path, "K": K, "H": H, "device": device_type,
           "import_torch_s": t_torch - t_start, "path_setup_ms": setup_s * 1e3, "calls": []}
    # First calls, in order: the first one pays whatever the path does on first use in a process
    # (library handles, module loading, JIT compilation); later ones whatever a new T costs.
    # Steady state is timed the same way (wall clock around one call and a synchronize).
    firsts = [timed(*inp) for inp in inputs]
    for inp, T, first in zip(inputs, Ts, firsts):
        steady = sorted(timed(*inp) for _ in range(n_steady))
        out["calls"].append({"T": T, "first_call_ms": first * 1e3,
                             "steady_call_us": steady[len(steady) // 2] * 1e6})
    print(json.dumps(out), flush=True)


def run_first_call(path_names, shapes, Ts, device_type, *, n_steady=20, timeout_s=600,
                   progress=None):
    """One fresh process per (path, shape). Returns a list of result dicts (one per process) with
    'calls': [{T, first_call_ms, steady_call_us}], or 'error' when the worker failed."""
    results = []
    for path in path_names:
        for K, H in shapes:
            env = dict(os.environ)
            tmp = None
            if path == "deep_gemm":
                # NOTE: DeepGEMM caches compiled kernels on disk; a fresh cache shows what a new
                # shape costs on a machine that has not run it before.
                tmp = tempfile.TemporaryDirectory(prefix="dsa_bench_dg_cache_")
                env["DG_JIT_CACHE_DIR"] = tmp.name
            cmd = [sys.executable, os.path.join(_HERE, "_bench_first_call.py"), path, device_type,
                   str(K), str(H), ",".join(str(t) for t in Ts), str(n_steady)]
            if progress:
                progress("first call: %s K=%d H=%d T=%s in a fresh process"
                         % (path, K, H, ",".join(map(str, Ts))))
            try:
                p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
                lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
                if p.returncode != 0 or not lines:
                    tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
                    res = {"path": path, "K": K, "H": H, "device": device_type,
                           "error": "worker exit %d: %s" % (p.returncode, " | ".join(tail))}
                else:
                    res = json.loads(lines[-1])
            except subprocess.TimeoutExpired:
                res = {"path": path, "K": K, "H": H, "device": device_type,
                       "error": "worker timed out after %d s" % timeout_s}
            finally:
                if tmp is not None:
                    tmp.cleanup()
            results.append(res)
    return results


if __name__ == "__main__":
    # Do not let this folder shadow top-level modules of the fresh process.
    if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
        sys.path.pop(0)
    a = sys.argv[1:]
    _worker(a[0], a[1], int(a[2]), int(a[3]), [int(t) for t in a[4].split(",")], int(a[5]))
