#!/usr/bin/env bash
# The one script for the GPU machine: versions, extension build (timed), compiler resource
# report, SASS and its voxel-loop instruction counts, kernel tests, compute-sanitizer
# (memcheck, racecheck) on small problems, the benchmark (automatic choice vs the fixed-point
# path), the tuning sweep at D = 128, and summary tables last.
#
#   bash benchmarks/run_gpu_ops.sh OUT_DIR
#
# On a lent machine that returns at most 8 files, write elsewhere and pack the folder:
#   bash benchmarks/run_gpu_ops.sh /tmp/ops; tar czf "$OUT/ops.tgz" -C /tmp/ops .
#
# Needs python3 with torch (CUDA), numpy, scipy, pytest; nvcc and ninja. Installs nothing.
# Every step writes its log under OUT_DIR; the whole run keeps within FLEXCORE_RUN_BUDGET_S
# (default 570 s) by giving each step a timeout from what is left.
set -uo pipefail

OUT=${1:?usage: bash benchmarks/run_gpu_ops.sh OUT_DIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
BUDGET=${FLEXCORE_RUN_BUDGET_S:-570}
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
STATUS=0

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
note() { echo "$*" | tee -a "$SUMMARY"; }
# step NAME MAX_SECONDS LOG CMD...: run with a timeout of min(MAX, time left - reserve)
step() {
  local name=$1 max=$2 log=$3; shift 3
  local t; t=$(left); t=$(( t - 25 )); (( t > max )) && t=$max
  if (( t < 20 )); then note "$name: skipped (out of time)"; STATUS=1; return 1; fi
  local t0=$SECONDS
  timeout --kill-after=10 "$t" "$@" > "$log" 2>&1
  local rc=$?
  note "$name: exit $rc in $(( SECONDS - t0 )) s (log: $(basename "$log"))"
  (( rc != 0 )) && STATUS=1
  return $rc
}

echo "== versions" | tee "$OUT/versions.txt"
{
  nvidia-smi
  "$PY" -c "import sys, torch, numpy, scipy; print('python', sys.version.split()[0]); \
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'numpy', numpy.__version__, \
'scipy', scipy.__version__); print('device', torch.cuda.get_device_name(0), \
torch.cuda.get_device_properties(0))"
  nvcc --version
  command -v ninja && ninja --version
} >> "$OUT/versions.txt" 2>&1
cat "$OUT/versions.txt"

echo "== build"
export FLEXCORE_BUILD_DIR=${FLEXCORE_BUILD_DIR:-/tmp/flexcore_build}
export FLEXCORE_BUILD_VERBOSE=1
step "build (JIT, torch.utils.cpp_extension.load)" 300 "$OUT/build.log" "$PY" -c "
import sys
from flexcore.core.ops.cuda import build_directory, load_extension
ext = load_extension()
print('build directory', build_directory())
sys.exit(0 if ext is not None else 1)"
BUILD_OK=$?
unset FLEXCORE_BUILD_VERBOSE
tail -n 3 "$OUT/build.log"
if (( BUILD_OK != 0 )) && [[ -f "$FLEXCORE_BUILD_DIR/last_build_error.txt" ]]; then
  cp "$FLEXCORE_BUILD_DIR/last_build_error.txt" "$OUT/"
  tail -n 30 "$OUT/last_build_error.txt"
fi

echo "== resource usage and SASS (sm_90)"
TMPO=$(mktemp -d)
if nvcc -c -arch=sm_90 -O3 -lineinfo --resource-usage flexcore/core/ops/csrc/splat.cu \
    -o "$TMPO/splat.o" > "$OUT/resource_usage.txt" 2>&1; then
  grep -E "registers|spill" "$OUT/resource_usage.txt" | sort | uniq -c | sort -rn | head -n 8
  if command -v cuobjdump > /dev/null; then
    cuobjdump --dump-sass "$TMPO/splat.o" > "$TMPO/splat.sass"
    "$PY" benchmarks/sass_loop_count.py "$TMPO/splat.sass" | tee "$OUT/sass_loop_count.txt"
    gzip -c "$TMPO/splat.sass" > "$OUT/splat_sm90.sass.gz"
  fi
else
  note "nvcc --resource-usage failed (see resource_usage.txt)"
fi
rm -rf "$TMPO"

echo "== ceilings"
"$PY" - > "$OUT/ceilings.txt" 2>&1 << 'EOF'
import torch
x = torch.empty(2 ** 29, device="cuda")  # 2 GiB
y = torch.empty_like(x)
for _ in range(3):
    y.copy_(x)
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
s.record()
for _ in range(10):
    y.copy_(x)
e.record()
e.synchronize()
print(f"device-to-device copy: {2 * x.numel() * 4 * 10 / (s.elapsed_time(e) * 1e-3) / 1e12:.2f} TB/s "
      "(bytes read + written)")
p = torch.cuda.get_device_properties(0)
print(f"SMs {p.multi_processor_count}, L2 {getattr(p, 'L2_cache_size', 0) / 2**20:.0f} MiB, "
      f"smem/block opt-in {getattr(p, 'shared_memory_per_block_optin', 0)} B")
EOF
cat "$OUT/ceilings.txt" | tee -a "$SUMMARY"

echo "== tests"
step "pytest tests/test_ops_cuda.py tests/test_ops_reference.py" 240 "$OUT/pytest.log" \
  "$PY" -m pytest -q -p no:cacheprovider tests/test_ops_cuda.py tests/test_ops_reference.py
tail -n 15 "$OUT/pytest.log"
grep -E "passed|failed|error" "$OUT/pytest.log" | tail -n 1 >> "$SUMMARY"

echo "== compute-sanitizer"
cat > "$OUT/sanitize_case.py" << 'EOF'
"""Small forward + backward runs over paths and images-per-block, for compute-sanitizer."""
import torch

from flexcore.core.ops import VoxelGeometry
from flexcore.core.ops.cuda import SplatTuning, splat_project_cuda
from flexcore.core.rotations import random_rotations

torch.manual_seed(0)
d, b, m, nv = 20, 9, 3000, 60
coords = ((torch.rand(m, 3) * 2 - 1) * 0.6 * d).cuda()
tet = torch.sort(torch.randint(0, m // 20, (m,))).values
vidx = torch.randint(0, nv, (m // 20, 4))[tet].int().cuda()
bary = torch.rand(m, 4).cuda()
bary /= bary.sum(1, keepdim=True)
rot = torch.as_tensor(random_rotations(b, 1), dtype=torch.float32).cuda()
geometry = VoxelGeometry(coords, vidx, bary)
for path in ("shared", "global", "fixed"):
    for g in (1, 3, 4):
        for tiles in (0, 1_000_000):
            dens = (torch.rand(m) + 0.5).cuda().requires_grad_()
            disp = torch.randn(b, nv, 3).cuda().requires_grad_()
            t = SplatTuning(images_per_block=g, path=path, tiles_per_block=tiles, threads=64)
            img = splat_project_cuda(dens, geometry, disp, rot, d, tuning=t)
            torch.autograd.backward(img, torch.randn_like(img))
            rigid = splat_project_cuda(dens, geometry, None, rot, d, tuning=t)
            torch.autograd.backward(rigid, torch.randn_like(rigid))
torch.cuda.synchronize()
print("sanitize case done")
EOF
if command -v compute-sanitizer > /dev/null && (( BUILD_OK == 0 )); then
  FILTER=()  # check only our kernels where the tool can filter by kernel-name substring
  if compute-sanitizer --help 2>&1 | grep -q -- "--kernel-name"; then
    FILTER=(--kernel-name kns=splat_)
  fi
  for tool in memcheck racecheck; do
    # one cudaMalloc per tensor, so that out-of-bounds accesses leave their allocation;
    # exit 99 means the tool found errors
    step "compute-sanitizer --tool $tool" 120 "$OUT/sanitizer_$tool.log" \
      env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool "$tool" \
      --error-exitcode 99 "${FILTER[@]}" "$PY" "$OUT/sanitize_case.py"
    rc=$?
    if (( rc != 0 && rc != 99 && rc != 124 && ${#FILTER[@]} > 0 )); then
      note "  (retrying without the kernel-name filter)"
      step "compute-sanitizer --tool $tool, all kernels" 120 "$OUT/sanitizer_${tool}_all.log" \
        env PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool "$tool" \
        --error-exitcode 99 "$PY" "$OUT/sanitize_case.py"
    fi
    cat "$OUT"/sanitizer_"$tool"*.log | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize case done" \
      | tail -n 3 | tee -a "$SUMMARY"
  done
else
  note "compute-sanitizer: not run (tool missing or build failed)"
fi

echo "== benchmark"
if (( BUILD_OK == 0 )); then
  # automatic choice vs the fixed-point path at every size, then the one-knob sweep at D = 128;
  # the CPU rows time the reference only (the native CPU kernel would be compiled first)
  step "benchmark (bench_ops.py --paths fixed --recon)" 240 "$OUT/bench.log" \
    "$PY" benchmarks/bench_ops.py --device all --paths fixed --recon --cpu-impls reference \
    --out "$OUT/bench_ops.json"
  tail -n 12 "$OUT/bench.log"
  step "tuning sweep at D = 128, B = 512" 150 "$OUT/bench_sweep.log" \
    "$PY" benchmarks/bench_ops.py --device cuda --no-reference --sweep --sizes 128 \
    --batches 512 --out "$OUT/bench_sweep.json"
  tail -n 6 "$OUT/bench_sweep.log"
else
  note "benchmark: not run (the extension did not build; see build.log)"
fi

echo
echo "== summary ($(( $(date +%s) - START )) s)"
cat "$SUMMARY"
for j in bench_ops bench_sweep; do
  if [[ -s "$OUT/$j.json" ]]; then
    "$PY" benchmarks/bench_ops.py --summary "$OUT/$j.json" | tee "$OUT/${j}_summary.txt"
  fi
done
exit $STATUS
