#!/usr/bin/env bash
# The GPU acceptance checks of kernelpro, in stages that each fit one 10-minute call of a lent GPU machine.
# The stages are independent: run them in any order, in one session or several.
#
#   scripts/gpu_acceptance.sh STAGE [OUT_DIR]          (run from the repository root; OUT_DIR: ./gpu-acceptance)
#
#   tests   pytest -m gpu (correctness wall and its planted candidates, timing, sanitizers, comparators, the
#           Kernel Tuner sweep, analyze/optimize/regress end to end)
#   capture record the tools' ncu capture (tests/fixtures/ncu-h100-tools/capture.sh) and run the tests that
#           read it; commit the two files it leaves in tests/fixtures/ncu-h100-tools/
#   timing  benchmarks: bench repeatability (5 runs), kernelpro timing vs ncu's gpu__time_duration,
#           diagnosis overhead (stage 1 / stage 2 seconds per candidate)
#   suite   kernelpro suite with the offline proposer ($SUITE_BUDGET evaluations and $SUITE_TIME per task)
#   peer    the knob-space sweeps for benchmarks/vs_kernel_tuner.py (compare them later on any machine)
#
# Each stage writes OUT_DIR/<stage>.log (everything printed, with each command and its exit status) and
# OUT_DIR/<stage>.tar.gz (the files it produced: fixtures, results, JUnit). The script installs kernelpro
# without dependencies (the GPU image has CuPy, nvidia-ml-py, click, rich, numpy, networkx, matplotlib and
# pytest; anthropic and kernel_tuner are not needed for these stages). It exits non-zero if any step failed,
# after running the others.
set -uo pipefail
stage=${1:?usage: scripts/gpu_acceptance.sh tests|capture|timing|suite|peer [OUT_DIR]}
out=$(mkdir -p "${2:-gpu-acceptance}" && cd "${2:-gpu-acceptance}" && pwd)
work="$out/$stage"
mkdir -p "$work"
log="$out/$stage.log"
: >"$log"
failed=0

step() {  # step NAME COMMAND...: run, log, remember failure
  local name=$1; shift
  echo "=== $name: $*" | tee -a "$log"
  local start=$SECONDS
  "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$log"
  [ "$rc" -eq 0 ] || failed=1
}

python3 -m pip install -q --no-deps --no-build-isolation -e . >>"$log" 2>&1 || { echo "install failed" | tee -a "$log"; exit 2; }
{ nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; ncu --version | tail -n 1;
  nvcc --version | tail -n 1; git rev-parse HEAD 2>/dev/null; } >>"$log" 2>&1

case "$stage" in
  tests)
    step gpu-tests env KERNELPRO_REQUIRE_GPU=1 python3 -m pytest -m gpu -v -rs -p no:cacheprovider --junitxml="$work/gpu-tests.xml" \
      tests/test_runner_gpu.py tests/test_end_to_end_gpu.py tests/test_regress.py tests/test_suite.py \
      tests/test_vs_kernel_tuner.py
    ;;
  capture)
    step capture tests/fixtures/ncu-h100-tools/capture.sh "$work/ncu-h100-tools"
    if [ -f "$work/ncu-h100-tools/planted_tools_raw.csv" ]; then
      cp "$work/ncu-h100-tools/"* tests/fixtures/ncu-h100-tools/
      step capture-tests python3 -m pytest -v -p no:cacheprovider tests/test_tools_capture.py
    fi
    ;;
  timing)
    step repeatability python3 benchmarks/bench_repeatability.py
    step timing-vs-ncu python3 benchmarks/timing_vs_ncu.py
    step diagnosis-overhead python3 benchmarks/diagnosis_overhead.py --repeats 3
    for task in transpose histogram softmax; do
      step "analyze-$task" kernelpro analyze "tasks/$task.cu"
    done
    ;;
  suite)
    step suite kernelpro suite --proposer offline --budget "${SUITE_BUDGET:-10}" --time "${SUITE_TIME:-25s}" \
      --results-dir "$work/results"
    ;;
  peer)
    step peer-sweep python3 benchmarks/vs_kernel_tuner.py sweep --out "$work/peer"
    ;;
  *)
    echo "unknown stage $stage (tests, capture, timing, suite, peer)" >&2; exit 2 ;;
esac

tar -czf "$out/$stage.tar.gz" -C "$out" "$stage"
echo "stage $stage: $([ $failed -eq 0 ] && echo all steps passed || echo SOME STEPS FAILED); see $log" | tee -a "$log"
exit $failed
