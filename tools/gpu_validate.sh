#!/usr/bin/env bash
# One unattended GPU validation of dsa-indexer on the H200 host (the evidence behind the issues'
# "ran on the H200"): GoogleTest suite (CPU + CUDA backends), pytest on CUDA, the benchmark
# (tools/run_gpu_bench.sh), compute-sanitizer memcheck/racecheck on representative shapes, and the
# sm_90a tile sweep. Each step writes its full log into RESULTS_DIR and one line into summary.txt.
#
# Usage: tools/gpu_validate.sh BIN_DIR PY_DIR RESULTS_DIR [TARBALL]
#   BIN_DIR: dsa_indexer_tests and sweep_sm90_tiles, built elsewhere (the host has no GoogleTest);
#   PY_DIR:  a folder holding an installed dsa_indexer package built against the host's torch
#            (used through PYTHONPATH); if it does not import, the package is built here instead;
#   TARBALL: if given, RESULTS_DIR is packed into it after every step (a run cut short keeps what
#            it finished).
set -uo pipefail
bin=$(cd "$1" && pwd)
py=$(cd "$2" && pwd)
mkdir -p "$3"
res=$(cd "$3" && pwd)
tarball=${4:-}
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$py${PYTHONPATH:+:$PYTHONPATH}"
failed=0

step() {  # step NAME TIMEOUT_S command...   (pack=0 step ...: leave the tarball alone)
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  echo "== $name (limit ${limit} s)"
  timeout "$limit" "$@" >"$res/$name.txt" 2>&1
  rc=$?
  echo "$name: exit $rc after $((SECONDS - t0)) s" | tee -a "$res/summary.txt"
  tail -n 4 "$res/$name.txt"
  ((rc == 0)) || failed=1
  [[ -z $tarball || ${pack:-1} == 0 ]] || tar czf "$tarball" -C "$res" .
}

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv
  nvcc --version | tail -n 1
  python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__)'
} >"$res/env.txt" 2>&1

if ! python3 -c 'import dsa_indexer' 2>/dev/null; then
  step pip_install 400 env CC=/usr/bin/gcc CXX=/usr/bin/g++ CMAKE_ARGS=-DDSA_INDEXER_CUDA_ARCHS=90a-real \
    python3 -m pip install --no-build-isolation --no-index --no-deps .
fi

# The steps that check correctness run side by side: they time nothing, and one after the other
# they took ~195 s of the ~350 (GoogleTest 38, pytest 110, memcheck 2, racecheck 42-49 on the 16-CPU
# host). The timed steps (the benchmark, the sweeps) run afterwards, alone on the GPU. Each
# background step writes its own log and summary line; `failed` is read back from summary.txt.

# GoogleTest: four shards in parallel (the float64 references run on the host's CPUs). A script
# of its own, not a function: `timeout` runs programs only.
pack=0 step cpp_tests 240 bash -c '
  for i in 0 1 2 3; do
    GTEST_TOTAL_SHARDS=4 GTEST_SHARD_INDEX=$i "$0/dsa_indexer_tests" --gtest_brief=1 >"$1/cpp_shard$i.log" 2>&1 &
  done
  rc=0
  for job in $(jobs -p); do wait "$job" || rc=1; done
  cat "$1"/cpp_shard*.log && rm -f "$1"/cpp_shard*.log
  exit $rc' "$bin" "$res" &
pack=0 step pytest 300 python3 -m pytest -q -ra -p no:cacheprovider -n 8 tests/python &

# One shape per kind of kernel: one-slot decode tile (T = 64), TMA prefill tile (T = 1000, GLM),
# the 32-token full-K tile (T = 4097, DeepSeek, a one-row last tile), the portable kernel; and the
# bitwise test, whose shapes reach every tile the two model shapes dispatch, the streamed-weight
# 128-token tile (T = 10241) and the full-K tiles (T = 4100, 8150) included (the sweep below
# compares every tile, fallbacks too, bitwise with the portable kernel), and the static-weight test
# (weight copied before griddepcontrol.wait).
shapes='*CudaAuto_T64_H64_K7168*:*CudaAuto_T1000_H32_K6144*:*CudaAuto_T4097_H64_K7168*:*CudaPortable_T3_H7_K100*'
shapes="$shapes:Cuda/CudaTest.FastPathBitwiseEqualsPortable/*:All/BackendTest.StaticWeightGivesTheSameBits/CudaAuto"
pack=0 step memcheck 180 compute-sanitizer --tool memcheck --error-exitcode 1 "$bin/dsa_indexer_tests" --gtest_filter="$shapes" &
pack=0 step racecheck 240 compute-sanitizer --tool racecheck --error-exitcode 1 "$bin/dsa_indexer_tests" --gtest_filter="$shapes" &
wait
grep -qv ': exit 0 after' "$res/summary.txt" && failed=1
[[ -z $tarball ]] || tar czf "$tarball" -C "$res" .

step bench 420 tools/run_gpu_bench.sh "$res/bench"
step sweep 150 "$bin/sweep_sm90_tiles" --T 1,8,16,32,64,128,256,512,1024,2048,4096,8192,16384,32768,65536 --json "$res/sweep.json"
# Every tile again with a static weight (copied before the wait), the weight rotated as in the benchmark.
step sweep_static 150 "$bin/sweep_sm90_tiles" --rotate-weight --static-weight \
  --T 1,16,32,64,96,128,192,256,384,512,768,1024,2048,4096,16384,65536 --json "$res/sweep_static.json"

echo "== done: $(grep -c 'exit 0' "$res/summary.txt") of $(wc -l <"$res/summary.txt") steps passed"
exit $failed
