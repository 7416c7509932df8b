#!/usr/bin/env bash
# The CUDA loss's first run on a GPU machine, in one go: build the package with the CUDA
# back-end for this GPU, then run every GPU test, the benchmark, the trainer's tests on the
# GPU, and compute-sanitizer (memcheck, racecheck, synccheck, initcheck) on a few small GPU
# tests with the time left.
# Sized to finish in under 8 minutes on one H100/H200 (each step has a time limit inside an
# overall budget; the most telling steps come first).
#
#   benchmarks/gpu_first_run.sh [RESULTS_DIR]     (default: $OUT, else ./gpu_first_run)
#
# Results, all in RESULTS_DIR: summary.txt (one line per step, pass/fail counts, error counts,
# the benchmark's figures), environment.txt, build.log, tests.log, train_tests.log, sanitizer.log,
# benchmark.log, benchmark.json. Exit status 0 when every step that could run passed; without
# a GPU the build still runs and the GPU steps are reported as skipped.
#
# Needs python3 with torch (CUDA build), pybind11, scikit-build-core, cmake, ninja,
# nvidia-cublas (CUDA 13), scipy-openblas32, pytest, pytest-benchmark, pytest-xdist and
# hypothesis; nvcc 13; compute-sanitizer (optional). Environment: PYTHON (default python3);
# HBT_GPU_WHEELS, a folder of wheels installed first (for a machine without a package index);
# HBT_GPU_BUDGET, seconds for the whole run (default 470); HBT_GPU_SANITIZERS, the
# compute-sanitizer tools (default: memcheck racecheck synccheck initcheck);
# CMAKE_CUDA_ARCHITECTURES (default: the GPU's own, else 90).
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=$(realpath -m "${1:-${OUT:-gpu_first_run}}")
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
BUDGET=${HBT_GPU_BUDGET:-470}
WORK=$(mktemp -d)
SITE=$WORK/site
SUMMARY=$RESULTS/summary.txt
: >"$SUMMARY"
failed=0

note() { echo "[$(date +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$SUMMARY"; }

# Seconds a step may take: at most MAX, and never so long that RESERVE seconds are not left
# for the steps after it.
limit_for() {
  local max=$1 reserve=$2 left=$((BUDGET - SECONDS - $2))
  ((left < max)) && max=$left
  ((max < 10)) && max=10
  echo "$max"
}

# run_step NAME MAX RESERVE LOG COMMAND...: COMMAND's output is appended to LOG and shown;
# its exit status is returned (124: over its time limit).
run_step() {
  local name=$1 limit
  limit=$(limit_for "$2" "$3")
  local log=$4
  shift 4
  note "$name: started, limit ${limit}s"
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
  local status=${PIPESTATUS[0]}
  note "$name: exit status $status$( ((status == 124)) && echo ' (time limit)')"
  return "$status"
}

# ---------------------------------------------------------------- environment
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  nvcc --version 2>&1 | tail -2
  compute-sanitizer --version 2>&1 | head -2
  "$PYTHON" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__,
"cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1
} >"$RESULTS/environment.txt" 2>&1
note "environment: $(tail -1 "$RESULTS/environment.txt")"

# ---------------------------------------------------------------- build
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
if [ -n "${HBT_GPU_WHEELS:-}" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
    "$HBT_GPU_WHEELS"/*.whl >>"$RESULTS/build.log" 2>&1 || note "wheels from $HBT_GPU_WHEELS: install failed"
fi
HBT_CUBLAS_ROOT=$("$PYTHON" -c 'import importlib.util as u
print(list(u.find_spec("nvidia.cu13").submodule_search_locations)[0])' 2>/dev/null)
export HBT_CUBLAS_ROOT
if [ -z "${CMAKE_CUDA_ARCHITECTURES:-}" ]; then
  capability=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
  CMAKE_CUDA_ARCHITECTURES="${capability:-90}-real"
fi
run_step build 240 200 "$RESULTS/build.log" \
  "$PYTHON" -m pip install --no-index --no-build-isolation --no-deps --no-compile --target "$SITE" \
  -Ccmake.define.HBT_CUDA=ON -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="$CMAKE_CUDA_ARCHITECTURES" \
  -Cbuild-dir="$WORK/build" .
if (($? != 0)); then
  note "RESULT: build FAILED (see build.log); nothing else ran"
  exit 1
fi
loss_cuda=$(cd "$WORK" && "$PYTHON" -c 'import hbt_fast; print(hbt_fast.info()["loss_cuda"])' 2>&1)
note "hbt_fast.info()['loss_cuda']: $loss_cuda"
gpu=$(cd "$WORK" && "$PYTHON" -c 'import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else "")' 2>/dev/null)
if [ -z "$gpu" ]; then
  note "RESULT: built; GPU steps SKIPPED: torch sees no CUDA GPU here"
  exit 0
fi
note "GPU: $gpu"

PYTEST=("$PYTHON" -m pytest -p no:cacheprovider)  # an array, not a function: run_step runs it under timeout

# ---------------------------------------------------------------- GPU tests
TESTS=tests/losses/test_loss_cuda.py
run_step "GPU tests" 100 200 "$RESULTS/tests.log" \
  "${PYTEST[@]}" -v -rfEs --durations=10 "$TESTS"
status=$?
((status != 0)) && failed=1
note "GPU tests: $(grep -E '^(=+ )?[0-9]+ (passed|failed)|^=+ .*(passed|failed|error)' "$RESULTS/tests.log" | tail -1)"

# ---------------------------------------------------------------- benchmark
run_step benchmark 90 150 "$RESULTS/benchmark.log" \
  "${PYTEST[@]}" -s -rfEs benchmarks/bench_loss_cuda.py --benchmark-json="$RESULTS/benchmark.json"
status=$?
((status != 0)) && failed=1
grep -E "^B=|speedup|device=" "$RESULTS/benchmark.log" | while read -r line; do note "benchmark: $line"; done

# ---------------------------------------------------------------- training on the GPU
# The trainer picks the GPU by itself: bf16 autocast, CUDA random state in checkpoints and
# GradCache, the fp16 scaler. Their tests, run here on the GPU (xdist workers share it).
TRAIN_TESTS=(tests/train/test_train_precision.py tests/train/test_gradcache.py
  tests/train/test_train_resume.py tests/train/test_trainer.py tests/train/test_duplicate_masking.py)
run_step "GPU training tests" 100 100 "$RESULTS/train_tests.log" \
  "${PYTEST[@]}" -p no:benchmark -q -rfEs -n 8 "${TRAIN_TESTS[@]}"
status=$?
((status != 0)) && failed=1
note "GPU training tests: $(grep -E '(passed|failed|error)' "$RESULTS/train_tests.log" | tail -1)"

# ---------------------------------------------------------------- compute-sanitizer
# Small tests only: row blocks with a partial last one, groups, extra negatives, both
# directions, 16-bit rows over several gradient chunks, a non-finite scale, a side stream.
SANITIZED=(
  "$TESTS::test_gpu_parity_with_reference[B97-M160-D32-groups30-one_way-t0.05-block32-torch.float32]"
  "$TESTS::test_gpu_parity_with_reference[B600-M2600-D48-groups50-symmetric-t0.03-block64-torch.bfloat16]"
  "$TESTS::test_gpu_parity_with_reference[B600-M2600-D48-groups50-symmetric-t0.03-block64-torch.float16]"
  "$TESTS::test_gpu_non_finite_scale_makes_everything_nan[nan-torch.float16]"
  "$TESTS::test_gpu_runs_on_the_current_stream[torch.bfloat16]"
)
# One process per test, so that a crash names its test and hides no other.
# initcheck first runs a plain torch GEMM and reads its output: an error there is the
# sanitizer not seeing cuBLAS's writes (Hopper's bulk tensor stores), not a bug of ours.
INITCHECK_PROBE='import torch
for dtype in (torch.float32, torch.bfloat16):
    q = torch.randn(600, 48, device="cuda", dtype=dtype)
    p = torch.randn(2600, 48, device="cuda", dtype=dtype)
    out = torch.empty(600, 2600, device="cuda", dtype=dtype)
    torch.mm(q, p.T, out=out)
    print("torch.mm", dtype, "output read back:", float(out.float().sum()))'
if command -v compute-sanitizer >/dev/null 2>&1; then
  for tool in ${HBT_GPU_SANITIZERS:-memcheck racecheck synccheck initcheck}; do
    # racecheck and synccheck watch this project's kernels only (cuBLAS's are not ours, and
    # instrumenting their shared memory would take most of the budget).
    filter=()
    case $tool in racecheck | synccheck) filter=(--kernel-name kns=cuda_loss) ;; esac
    sanitize=(compute-sanitizer --tool "$tool" "${filter[@]}" --error-exitcode 9 --print-limit 10)
    if [ "$tool" = initcheck ]; then
      echo "==================== initcheck: torch.mm probe" >>"$RESULTS/sanitizer.log"
      run_step "compute-sanitizer initcheck, torch.mm probe" 40 0 "$RESULTS/sanitizer.log" \
        "${sanitize[@]}" "$PYTHON" -c "$INITCHECK_PROBE"
      note "compute-sanitizer initcheck, torch.mm probe: $(tail -3 "$RESULTS/sanitizer.log" | grep -E 'ERROR SUMMARY' | tr '\n' ' ')"
    fi
    for test in "${SANITIZED[@]}"; do
      echo "==================== $tool $test" >>"$RESULTS/sanitizer.log"
      start_line=$(wc -l <"$RESULTS/sanitizer.log")
      run_step "compute-sanitizer $tool ${test#*::}" 40 0 "$RESULTS/sanitizer.log" \
        "${sanitize[@]}" "${PYTEST[@]}" -q "$test"
      status=$?
      errors=$(tail -n +"$start_line" "$RESULTS/sanitizer.log" | grep -E "ERROR SUMMARY|Internal Sanitizer|passed|failed" | tr '\n' ' ')
      note "compute-sanitizer $tool ${test#*::}: ${errors:-no summary line} (exit status $status)"
      ((status != 0)) && failed=1
    done
  done
else
  note "compute-sanitizer: SKIPPED (not on PATH)"
fi

if ((failed)); then
  note "RESULT: FAILED (see the logs in $RESULTS)"
  exit 1
fi
note "RESULT: all steps passed"
