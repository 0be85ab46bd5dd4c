"""Output of `python -m dsa_indexer.bench`: environment facts, the per-shape tables (text and
Markdown), the raw JSON and the latency-vs-T plot."""

import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys

import torch

SHAPE_NAMES = {(7168, 64): "DeepSeek-V3.2", (6144, 32): "GLM-5"}
MODE_TITLES = {"graph": "CUDA-graph replay", "eager": "eager"}
PATH_STYLE = {  # colour, line width, marker
    "dsa_indexer": ("tab:blue", 2.4, "o"),
    "dsa_indexer.static": ("tab:purple", 2.0, "D"),
    "sglang": ("tab:orange", 1.6, "s"),
    "torch.mm": ("tab:green", 1.6, "^"),
    "deep_gemm": ("tab:red", 1.6, "v"),
}


def shape_label(K, H):
    name = SHAPE_NAMES.get((K, H))
    return "K=%d H=%d%s" % (K, H, " (%s)" % name if name else "")


def _run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # tool missing or hanging: the fact is simply unknown
        return ""


def _driver_version(index):
    v = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader",
              "-i", str(index)])
    if v:
        return v.splitlines()[0].strip()
    try:  # no nvidia-smi: the kernel module says it too
        with open("/proc/driver/nvidia/version") as f:
            m = re.search(r"Kernel Module\s+([0-9.]+)", f.read())
        return m.group(1) if m else None
    except OSError:
        return None


def environment(device, library_version):
    now = datetime.datetime.now(datetime.timezone.utc)
    env = {
        "date": now.isoformat(timespec="seconds"),
        "host": platform.node(),
        "device": device.type,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "dsa_indexer": library_version,
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "command": " ".join(["python -m dsa_indexer.bench"] + sys.argv[1:]),
    }
    model = _run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"])
    if model:
        env["cpu"] = model
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = props.name
        env["gpu_sm_count"] = props.multi_processor_count
        env["gpu_capability"] = "%d.%d" % (props.major, props.minor)
        env["gpu_memory_gib"] = round(props.total_memory / 2 ** 30, 1)
        env["gpu_l2_bytes"] = getattr(props, "L2_cache_size", None)
        env["driver"] = _driver_version(torch.cuda.current_device() if device.index is None
                                        else device.index)
    else:
        env["gpu"] = None
        env["driver"] = None
    commit = _run(["git", "rev-parse", "--short", "HEAD"])
    env["git_commit_of_cwd"] = commit or None
    return env


def device_slug(env):
    if env["gpu"]:
        return re.sub(r"[^a-z0-9]+", "-", env["gpu"].lower()).strip("-")
    return "cpu"


def default_out_dir(env):
    return os.path.join("bench", "results", "%s_%s" % (env["date"][:10], device_slug(env)))


# ---------------------------------------------------------------------------------------------
def _fmt_us(v, missing):
    if v is None:
        return missing
    return "%.2f" % v if v < 100 else "%.1f" % v if v < 1000 else "%.0f" % v


def _fmt_sig(v):
    return "%.0f" % v if v >= 100 else "%.1f" % v if v >= 10 else "%.2f" % v


def _geomean(vals):
    vals = [v for v in vals if v and v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def latency_tables(result):
    """One table per (mode, shape): list of (title, header, rows, notes)."""
    paths = result["paths"]
    missing = {p: (result["unavailable"].get(p) or "n/a") for p in paths}
    tables = []
    for mode in result["timing"]["modes"]:
        for K, H in result["shapes"]:
            recs = [r for r in result["records"] if r["mode"] == mode and (r["K"], r["H"]) == (K, H)]
            if not recs:
                continue
            header = ["T"] + ["%s us" % p for p in paths] + ["floor us", "GB/s", "% of floor",
                                                             "x vs sglang"]
            rows = []
            for r in recs:
                ours, base = r.get("dsa_indexer"), r.get("sglang")
                row = [str(r["T"])] + [
                    "error" if "error" in r["detail"].get(p, {}) else _fmt_us(r.get(p), missing[p])
                    for p in paths]
                row.append(_fmt_us(r["floor"], "n/a"))
                row.append(_fmt_sig(r["bytes"] / (ours * 1e-6) / 1e9) if ours else "n/a")
                row.append("%.1f%%" % (100.0 * r["floor"] / ours) if ours else "n/a")
                row.append("%.2fx" % (base / ours) if ours and base else "n/a")
                rows.append(row)
            notes = []
            for ours_p, other in (("dsa_indexer", "sglang"), ("dsa_indexer", "torch.mm"),
                                  ("dsa_indexer", "deep_gemm"), ("dsa_indexer.static", "sglang")):
                ratios = [(r[other] / r[ours_p], r["T"]) for r in recs
                          if r.get(other) and r.get(ours_p)]
                if ratios:
                    lo = min(ratios)
                    notes.append("%s vs %s: %.2fx geomean, %.2fx at worst (T=%d), "
                                 "%.2fx at best" % (ours_p, other, _geomean([q for q, _ in ratios]),
                                                     lo[0], lo[1], max(ratios)[0]))
            pct = sorted(100.0 * r["floor"] / r["dsa_indexer"] for r in recs if r.get("dsa_indexer"))
            if pct:
                notes.append("dsa_indexer %% of floor: median %.1f%%, best %.1f%%"
                             % (pct[len(pct) // 2], pct[-1]))
            title = "%s | %s | %s | us per call (median)" % (
                MODE_TITLES[mode], shape_label(K, H), result["env"]["gpu"] or "CPU")
            tables.append((title, header, rows, notes))
    return tables


def first_call_table(result):
    header = ["path", "shape", "T", "first call ms", "steady call us", "first / steady",
              "path setup ms"]
    rows = []
    for res in result.get("first_call") or []:
        shape = "%dx%d" % (res["K"], res["H"])
        if "error" in res:
            rows.append([res["path"], shape, "-", "error: " + res["error"], "", "", ""])
            continue
        for i, c in enumerate(res["calls"]):
            rows.append([res["path"], shape, str(c["T"]), "%.2f" % c["first_call_ms"],
                         "%.1f" % c["steady_call_us"],
                         "%.0fx" % (c["first_call_ms"] * 1e3 / c["steady_call_us"]),
                         "%.1f" % res["path_setup_ms"] if i == 0 else ""])
    title = ("First call in a fresh process (%s): wall clock around one call and a synchronize; "
             "the first T is the process's first call, later Ts the first call at a new T"
             % (result["env"]["gpu"] or "CPU"))
    return title, header, rows


def overhead_table(result):
    ov = result.get("overhead")
    header = ["path", "host us/call", "wall us/call", "GPU event us/call"]
    rows = [[o["path"], "%.2f" % o["host_us"], "%.2f" % o["wall_us"],
             "%.2f" % o["event_us"] if o["event_us"] is not None else "n/a"] for o in ov["paths"]]
    title = ("Eager host overhead at T=1, %s, %d back-to-back calls, median of %d (%s)"
             % (shape_label(ov["K"], ov["H"]), ov["calls"], ov["repeats"],
                result["env"]["gpu"] or "CPU"))
    return title, header, rows


def render_text(header, rows):
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
              for i in range(len(header))]
    fmt = lambda cells: " | ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    lines = [fmt(header), "-+-".join("-" * w for w in widths)]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def render_markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    lines += ["| " + " | ".join(rows_i) + " |" for rows_i in rows]
    return "\n".join(lines)


def text_report(result, markdown=False):
    out = []
    env = result["env"]
    if markdown:
        out.append("# dsa-indexer benchmark: %s, %s" % (env["gpu"] or "CPU (" + env["cpu"] + ")",
                                                        env["date"][:10]))
        out.append("")
        out.append("Written by `%s`; never edited by hand." % env["command"])
        out.append("")
        facts = ["date %s" % env["date"], "host %s" % env["host"]]
        if env["gpu"]:
            facts += ["GPU %s" % env["gpu"], "driver %s" % env["driver"]]
        facts += ["CPU %s (%d threads)" % (env["cpu"], env["cpu_threads"]),
                  "CUDA %s" % env["cuda"], "torch %s" % env["torch"],
                  "dsa_indexer %s" % env["dsa_indexer"],
                  "deep_gemm %s" % (result["deep_gemm"] or "not installed"),
                  "python %s" % env["python"]]
        out.append("- " + "\n- ".join(facts))
        out.append("")
    for line in result["notes"]:
        out.append(("- " if markdown else "# ") + line)
    out.append("")
    for title, header, rows, notes in latency_tables(result):
        out.append(("## " if markdown else "== ") + title + ("" if markdown else " =="))
        if markdown:
            out.append("")
        out.append(render_markdown(header, rows) if markdown else render_text(header, rows))
        if markdown:
            out.append("")
        for n in notes:
            out.append(("- " if markdown else "   ") + n)
        out.append("")
    for section in ("first_call", "overhead"):
        if not result.get(section):
            continue
        title, header, rows = (first_call_table if section == "first_call" else overhead_table)(result)
        out.append(("## " if markdown else "== ") + title + ("" if markdown else " =="))
        if markdown:
            out.append("")
        out.append(render_markdown(header, rows) if markdown else render_text(header, rows))
        if section == "overhead" and result["overhead"].get("verdict"):
            out.append(("\n- " if markdown else "   ") + result["overhead"]["verdict"])
        out.append("")
    return "\n".join(out)


def write_json(result, path):
    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, float) and not math.isfinite(o):
            return None
        return o

    with open(path, "w") as f:
        json.dump(clean(result), f, indent=1)
        f.write("\n")


def plot(result, path):
    import matplotlib  # noqa: PLC0415 (optional: only the PNG needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import matplotlib.ticker  # noqa: PLC0415

    modes = result["timing"]["modes"]
    shapes = [tuple(s) for s in result["shapes"]]
    fig, axes = plt.subplots(len(modes), len(shapes), squeeze=False,
                             figsize=(max(8.5, 6.4 * len(shapes)), 4.8 * len(modes) + 0.5))
    for i, mode in enumerate(modes):
        for j, (K, H) in enumerate(shapes):
            ax = axes[i][j]
            recs = [r for r in result["records"] if r["mode"] == mode and (r["K"], r["H"]) == (K, H)]
            Ts = [r["T"] for r in recs]
            for p in result["paths"]:
                pts = [(r["T"], r[p]) for r in recs if r.get(p) is not None]
                if not pts:
                    if p in result["unavailable"]:
                        ax.plot([], [], " ", label="%s: %s" % (p, result["unavailable"][p]))
                    continue
                color, lw, marker = PATH_STYLE.get(p, ("tab:gray", 1.4, "."))
                ax.plot(*zip(*pts), color=color, lw=lw, marker=marker, ms=4, label=p)
            ax.plot(Ts, [r["floor"] for r in recs], color="black", ls="--", lw=1.4,
                    label="floor: max(bytes / copy BW, FLOPs / mm rate)")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            if Ts:
                ax.set_xticks(Ts)
                step = 1 if len(Ts) <= 9 else 2
                ax.set_xticklabels([str(t) if k % step == 0 else "" for k, t in enumerate(Ts)],
                                   fontsize=8)
                ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xlabel("tokens T (rows of x)")
            ax.set_ylabel("latency per call (us)")
            ax.set_title("%s, %s" % (shape_label(K, H), MODE_TITLES[mode]))
            ax.grid(True, which="major", alpha=0.35)
            ax.grid(True, which="minor", alpha=0.12)
    # One legend for all panels, under them, so that it never hides a line.
    handles, labels = axes[0][0].get_legend_handles_labels()
    ncol = len(labels) if len(shapes) >= 2 else 2
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=10, frameon=False)
    legend_rows = -(-len(labels) // ncol)
    env = result["env"]
    fig.suptitle("dsa-indexer logits_head_gate: %s, torch %s, %s" % (
        env["gpu"] or "CPU (%s)" % env["cpu"], env["torch"], env["date"][:10]), fontsize=12)
    fig_h = 4.8 * len(modes) + 0.5
    fig.tight_layout(rect=(0, (0.1 + 0.28 * legend_rows) / fig_h, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
