#!/usr/bin/env bash
# The C++ core under AddressSanitizer + UndefinedBehaviorSanitizer: the core tests (ctest),
# then every fuzz harness (tests/fuzz/fuzz_*.cpp) for FUZZ_SECONDS each, starting from its
# corpus tests/fuzz/corpus/<name>/ when there is one. Needs cmake, ninja, pybind11 and
# scipy-openblas32 in the active Python (as .ci/run installs them).
#   FUZZ_SECONDS  time per harness (default 20)
#   FUZZ_SEED     seed of the generated inputs (default: derived from the commit, printed, so a
#                 CI failure replays with the same seed; a failing input is also saved to
#                 crash-<harness>-<hash> in the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${SANITIZE_BUILD_DIR:-build/sanitize}"
seconds="${FUZZ_SECONDS:-20}"
if [[ -z "${FUZZ_SEED:-}" ]]; then
  FUZZ_SEED=$((16#$(git rev-parse --short=12 HEAD 2>/dev/null || echo 0)))
fi
harnesses=()
for source in tests/fuzz/fuzz_*.cpp; do
  [[ -e "$source" ]] && harnesses+=("$(basename "$source" .cpp)")
done

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DHBT_SANITIZE=ON -DHBT_CUDA=OFF \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v python)" >/dev/null
cmake --build "$build" -j 2 --target test_core "${harnesses[@]}"

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
(cd "$build" && ctest --output-on-failure)
for harness in "${harnesses[@]}"; do
  corpus="tests/fuzz/corpus/${harness#fuzz_}"
  args=(--seconds "$seconds" --seed "$FUZZ_SEED")
  [[ -d "$corpus" ]] && args+=("$corpus")
  "$build/$harness" "${args[@]}"
done
