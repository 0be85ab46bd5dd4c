# Smoke test of the benchmark command `python -m dsa_indexer.bench` on the CPU (tiny shapes and T so
# it runs in seconds): exit code, printed table, JSON records and files; a wrong result must stop it
# with a non-zero exit before anything is timed.
import importlib.util
import json
import os
import subprocess
import sys

import torch

from dsa_indexer import _bench_paths as P

PATH_KEYS = ("dsa_indexer", "dsa_indexer.static", "sglang", "torch.mm", "deep_gemm", "floor")
QUICK = ["--device", "cpu", "--repeats", "2", "--min-time", "0.001", "--rotate-mb", "2"]


def run_bench(args, cwd):
    # cwd outside the source tree: the installed package is what runs.
    return subprocess.run([sys.executable, "-m", "dsa_indexer.bench", *QUICK, *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cpu_run_writes_table_json_markdown_plot(tmp_path):
    out = tmp_path / "res"
    p = run_bench(["--T", "1,5", "--shapes", "64x4,7168x64", "--overhead", "--out", str(out)],
                  tmp_path)
    assert p.returncode == 0, p.stderr
    assert "x vs sglang" in p.stdout and "% of floor" in p.stdout
    assert "K=7168 H=64 (DeepSeek-V3.2)" in p.stdout
    assert "[2/4]" in p.stderr  # progress display
    data = json.loads((out / "results.json").read_text())
    for key in ("date", "host", "torch", "cuda", "dsa_indexer", "gpu", "driver"):
        assert key in data["env"], key
    assert data["ceilings"]["copy_bytes_per_s"] > 0 and data["ceilings"]["matmul_flop_per_s"] > 0
    recs = data["records"]
    assert [(r["K"], r["H"], r["T"], r["mode"]) for r in recs] == [
        (64, 4, 1, "eager"), (64, 4, 5, "eager"), (7168, 64, 1, "eager"), (7168, 64, 5, "eager")]
    for r in recs:
        for k in PATH_KEYS:
            assert k in r, k
        assert r["deep_gemm"] is None  # GPU only
        for k in ("dsa_indexer", "dsa_indexer.static", "sglang", "torch.mm", "floor"):
            assert isinstance(r[k], float) and r[k] > 0, (k, r)
    assert all(v["ok"] for v in data["validation"])
    assert {v["path"] for v in data["validation"]} == {"dsa_indexer", "dsa_indexer.static", "sglang"}
    assert len(data["overhead"]["paths"]) == 5
    md = (out / "results.md").read_text()
    assert "| T |" in md and "x vs sglang" in md
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "matplotlib is not installed" in p.stderr


def test_first_call_in_fresh_processes(tmp_path):
    out = tmp_path / "res"
    p = run_bench(["--T", "1", "--shapes", "64x4", "--skip-latency", "--first-call",
                   "--first-call-T", "1,3", "--out", str(out)], tmp_path)
    assert p.returncode == 0, p.stderr
    data = json.loads((out / "results.json").read_text())
    fc = data["first_call"]
    assert [r["path"] for r in fc] == ["dsa_indexer", "sglang"]
    for r in fc:
        assert "error" not in r, r
        assert [c["T"] for c in r["calls"]] == [1, 3]
        assert all(c["first_call_ms"] > 0 and c["steady_call_us"] > 0 for c in r["calls"])
    assert "First call in a fresh process" in p.stdout


def test_wrong_result_stops_before_timing(tmp_path):
    out = tmp_path / "res"
    p = run_bench(["--T", "2", "--shapes", "64x4", "--inject-error", "--out", str(out)], tmp_path)
    assert p.returncode == 1
    assert "VALIDATION FAILED: dsa_indexer K=64 H=4 T=2" in p.stderr
    assert not out.exists()


def test_bad_flag_is_a_usage_error(tmp_path):
    p = run_bench(["--shapes", "7168by64"], tmp_path)
    assert p.returncode == 2 and "KxH" in p.stderr


def test_check_catches_one_bad_element_and_nan():
    g = torch.Generator().manual_seed(0)
    x, w, q = P.make_inputs(6, 256, 8, "cpu", g)
    nhis, ss = P.scales(8)
    ref = ((x.double() @ w.double().t()) * nhis * q.double().squeeze(-1) * ss).float()
    rows = P.validation_rows(6)
    assert P.check_against_float64(ref.unsqueeze(-1), x, w, q, nhis, ss, rows)["ok"]
    bad = ref.clone()
    bad[3, 5] *= 1.01
    res = P.check_against_float64(bad, x, w, q, nhis, ss, rows)
    assert not res["ok"] and "t=3, h=5" in res["why"]
    bad = ref.clone()
    bad[0, 0] = float("nan")
    assert not P.check_against_float64(bad, x, w, q, nhis, ss, rows)["ok"]


def test_validation_rows_sample_large_T():
    rows = P.validation_rows(65536)
    assert rows.numel() == 512 and rows[0] == 0 and rows[-1] == 65535
    assert rows.unique().numel() == 512
    assert torch.equal(P.validation_rows(7), torch.arange(7))


def test_module_entry_point_exists():
    # `python -m dsa_indexer.bench` resolves to this module (and its main returns an exit code).
    import dsa_indexer.bench as bench

    assert callable(bench.main)
    assert os.path.basename(bench.__file__) == "bench.py"
