#!/usr/bin/env bash
# Compiler resource report of the CUDA kernels (registers, shared memory, stack, spills from ptxas -v)
# and the matrix / copy instructions their SASS contains (HGMMA = wgmma, HMMA = mma.sync, UTMALDG =
# TMA load, LDGSTS = cp.async), per kernel, for the sm_90a build.
# Usage: tools/resource_report.sh [OUT_FILE]   (needs nvcc; cuobjdump from the toolkit or, where the
#        toolkit lacks it, from triton's package: CUOBJDUMP=/path/to/cuobjdump)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/dev/stdout}
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
cmake -S . -B "$build" -G Ninja -DDSA_INDEXER_BUILD_TESTS=OFF -DDSA_INDEXER_CUDA_ARCHS=90a-real >/dev/null
ninja -C "$build" -v dsa_indexer >"$build/log.txt" 2>&1
cuobj=${CUOBJDUMP:-$(command -v cuobjdump || python3 -c 'import triton, os; print(os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump"))')}
{
  echo "# dsa-indexer CUDA resource report, sm_90a, $(nvcc --version | tail -n 1), $(date -u +%F)"
  echo "## ptxas -v"
  grep -E "Compiling entry|registers|spill" "$build/log.txt" | sed -E 's/_ZN11dsa_indexer4cuda[0-9]+_GLOBAL__N__[0-9a-f_]+_[0-9]+_//'
  echo "## SASS instruction counts per kernel"
  for obj in $(find "$build/CMakeFiles/dsa_indexer.dir" -name "*.cu.o" | sort); do
    "$cuobj" -sass "$obj" 2>/dev/null | python3 -c '
import re, sys, collections
txt = sys.stdin.read()
for f in re.split(r"\n\s*Function : ", txt)[1:]:
    name = f.split("\n", 1)[0]
    m = re.search(r"(generic\w+kernelILb\d)|(?:FullK)?ConfigI(?:L[ib]\d+E)+", name)
    ops = collections.Counter(i.split()[0].split(".")[0] for i in re.findall(r"/\*[0-9a-f]{4}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][^;]*);", f))
    keys = ["HGMMA", "HMMA", "UTMALDG", "UBLKCP", "LDGSTS", "LDSM", "SYNCS", "UCGABAR_ARV", "UCGABAR_WAIT", "MEMBAR"]
    label = m.group(0) if m else name[:80]
    print(label, sum(ops.values()), "instructions:", ", ".join(f"{k} {ops[k]}" for k in keys if ops[k]))
'
  done
} >"$out"
