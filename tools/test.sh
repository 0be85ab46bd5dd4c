#!/usr/bin/env bash
# Builds and runs every test of dsa-indexer: the C++ library with its GoogleTest suite (ctest),
# then the PyTorch operator installed into the current Python environment (which must have torch,
# pytest, numpy, scikit-build-core), then the pytest suite.
# Usage: bash tools/test.sh            (CUDA kernels built when nvcc is found)
#   CMAKE_ARGS="-DDSA_INDEXER_CUDA_ARCHS=90a-real" bash tools/test.sh   (one arch: quicker)
#   bash tools/test.sh --python-only   (skip the C++ part: a host without GoogleTest)
#   DSA_INDEXER_JOBS=N for build parallelism (default 2), PYTHON=... for another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
CPP=1
if [[ "${1:-}" == "--python-only" ]]; then CPP=0; fi

JOBS=${DSA_INDEXER_JOBS:-2}
PY=${PYTHON:-python3}
GEN=()
if command -v ninja >/dev/null 2>&1; then GEN=(-G Ninja); fi

if ((CPP)); then
  echo "== C++: configure, build, ctest (build/cpp)"
  # shellcheck disable=SC2086  # CMAKE_ARGS is a space-separated list of -D options by convention
  cmake -S . -B build/cpp "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DDSA_INDEXER_BUILD_TESTS=ON -DDSA_INDEXER_BUILD_BENCH=ON ${CMAKE_ARGS:-}
  cmake --build build/cpp -j "$JOBS"
  ctest --test-dir build/cpp --output-on-failure -j "$JOBS"
  echo "== C++: install, then build and run examples/basic against the installed package"
  rm -rf build/prefix build/example
  cmake --install build/cpp --prefix build/prefix >/dev/null
  cmake -S examples/basic -B build/example "${GEN[@]}" -DCMAKE_PREFIX_PATH="$PWD/build/prefix"
  cmake --build build/example -j "$JOBS"
  ./build/example/example
fi

echo "== Python: build and install the PyTorch operator against $("$PY" -c 'import torch; print("torch", torch.__version__)')"
CMAKE_BUILD_PARALLEL_LEVEL=$JOBS "$PY" -m pip install --no-build-isolation --no-deps -q .

echo "== Python: pytest tests/python"
# python/ is not on sys.path, so the installed package (with its compiled operator) is imported.
"$PY" -m pytest -ra -p no:cacheprovider -W ignore::DeprecationWarning "$PWD/tests/python" --rootdir "$PWD"
