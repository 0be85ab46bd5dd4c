#!/usr/bin/env bash
# The main job (README): sets up a fresh machine like .ci/run does (tools/env.sh), builds and installs
# dsa_indexer with its PyTorch operator, then runs the benchmark, `python -m dsa_indexer.bench`: on the
# GPU when there is one, else the CPU backend against torch's CPU path. Extra arguments go to the
# benchmark (e.g. --T 1,64,4096 --shapes 7168x64 --eager --out DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/env.sh
CMAKE_BUILD_PARALLEL_LEVEL=${DSA_INDEXER_JOBS:-2} python -m pip install --no-build-isolation --no-deps -q .
# The checkout's root has no dsa_indexer/ folder, so the installed package (with its compiled
# operator) is what gets imported; results go to bench/results/<date>_<gpu or cpu>/ unless --out.
exec python -m dsa_indexer.bench "$@"
