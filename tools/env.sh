# Sourced by .ci/run and tools/bench.sh: on a fresh Debian machine (root, as in CI), installs the
# missing build dependencies and creates or reuses a Python environment with torch, cached outside
# the clone, then activates it. No GPU needed.
# NOTE: the PyPI torch wheel for Linux is the CUDA build with its nvidia-* wheels (~4.8 GB installed);
# a cold install took 62-76 s on the 2-core development machine, so it is cached by torch version.

need=()
for pkg in libgtest-dev libbenchmark-dev libopenblas-dev cmake ninja-build g++; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "== apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" </dev/null
fi

TORCH_VERSION=2.11.0
PYTHON=${PYTHON:-python3}
PYV=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/dsa_indexer-ci/venv-torch${TORCH_VERSION}-py${PYV}
if [[ ! -f "$VENV/.complete" ]] ||
  ! "$VENV/bin/python" -c "import torch, numpy, pytest, scikit_build_core, matplotlib" 2>/dev/null; then
  echo "== creating $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "torch==${TORCH_VERSION}" numpy pytest scikit-build-core cmake ninja matplotlib
  touch "$VENV/.complete"
else
  echo "== reusing $VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
