#!/usr/bin/env bash
# Full GPU benchmark of dsa-indexer (issue 4), meant for the H200 host and to run unattended: one
# `python -m dsa_indexer.bench` run that validates, times both shapes at T = 1..65536 in CUDA-graph and
# eager mode, times first calls in fresh processes and eager host overhead, and writes JSON, Markdown,
# PNG, the printed table and the progress log into RESULTS_DIR. About 2-4 minutes on an H200.
#
# Usage (any cwd):  tools/run_gpu_bench.sh RESULTS_DIR [extra flags for python -m dsa_indexer.bench]
#   e.g.            tools/run_gpu_bench.sh bench/results/2026-11-29_nvidia-h200
# Env: PYTHON (default python3). If dsa_indexer does not import (or its bench.py is not this
# checkout's), or INSTALL=1, it is first built and installed from this checkout, offline, with
# pip install --no-build-isolation --no-index . and the system gcc (see shared GPU.md);
# CMAKE_ARGS=-DDSA_INDEXER_CUDA_ARCHS=90a-real shortens that build.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 RESULTS_DIR [extra bench flags]" >&2
  exit 2
fi
mkdir -p "$1"
out=$(cd "$1" && pwd)
shift
PY=${PYTHON:-python3}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

# Installed and current? (the installed bench.py must be this checkout's; INSTALL=1 forces a rebuild,
# for instance after a change to the kernels)
current() {
  "$PY" - <<'PYEOF' >/dev/null 2>&1
import filecmp, sys
import dsa_indexer.bench as b
sys.exit(0 if filecmp.cmp(b.__file__, "python/dsa_indexer/bench.py", shallow=False) else 1)
PYEOF
}
if [ "${INSTALL:-0}" = 1 ] || ! current; then
  echo "== building and installing dsa_indexer from $repo (log: $out/install.log)" >&2
  if ! CC=/usr/bin/gcc CXX=/usr/bin/g++ "$PY" -m pip install --no-build-isolation --no-index --no-deps . \
      >"$out/install.log" 2>&1; then
    tail -n 40 "$out/install.log" >&2
    echo "ERROR: pip install failed (full log: $out/install.log)" >&2
    exit 3
  fi
fi

{ nvidia-smi || true; } >"$out/nvidia-smi.txt" 2>&1
"$PY" -c "import deep_gemm" >/dev/null 2>&1 || echo "== deep_gemm is not installed: its column will say so" >&2

start=$(date +%s)
# stdout (the tables) and stderr (progress) are both shown live and kept.
set +e
"$PY" -m dsa_indexer.bench --modes graph,eager --first-call --overhead --out "$out" "$@" \
  2> >(tee "$out/progress.log" >&2) | tee "$out/table.txt"
rc=${PIPESTATUS[0]}
set -e
wait  # for the tee of stderr
echo "== python -m dsa_indexer.bench exited $rc after $(( $(date +%s) - start )) s; results in $out" >&2
ls -l "$out" >&2
exit "$rc"
