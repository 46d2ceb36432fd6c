#!/usr/bin/env bash
# The GPU acceptance checks of kernelpro, in stages. Run `smoke` FIRST: one short pass over every GPU path.
# The other stages are independent: run them in any order, in one session or several.
#
#   scripts/gpu_acceptance.sh STAGE [OUT_DIR]          (run from the repository root; OUT_DIR: ./gpu-acceptance)
#
# Stage            what it runs                                                   target   measured (H100)
#   smoke          every GPU path once, each step under its own timeout (below)      6 min  not yet measured
#   tests-runner   pytest -m gpu tests/test_runner_gpu.py -k "not leak": the planted  8 min  not yet measured
#                  candidates, timing methods, sanitizers, the backend
#   tests-leak     the 300-evaluation GPU memory leak test                            8 min  not yet measured
#   tests-e2e      analyze / optimize (--time 3m) / regress end to end                8 min  not yet measured
#   tests-other    the gpu tests of regress, suite (comparators) and the peer sweep   8 min  not yet measured
#   capture        record the tools' ncu capture (tests/fixtures/ncu-h100-tools/      8 min  not yet measured
#                  capture.sh) and run the tests that read it; commit the two files
#   timing         bench repeatability (5 runs), timing vs ncu (clean and dirty       8 min  not yet measured
#                  L2 flush)
#   diagnosis      diagnosis overhead (3 repeats), analyze on transpose, histogram,   8 min  not yet measured
#                  softmax
#   suite-1        kernelpro suite, offline proposer, tasks/[a-r]*.cu (7 tasks)       8 min  not yet measured
#   suite-2        the same on tasks/[s-z]*.cu (7 tasks)                              8 min  not yet measured
#   peer           the knob-space sweeps for benchmarks/vs_kernel_tuner.py            8 min  not yet measured
#
# smoke's steps (scripts/smoke.py holds their logic), each with its own timeout; estimates not yet measured:
#   install 15 s | env 30 s (probes ncu counters and compute-sanitizer) | backend 10 s | wall 50 s (a hang
#   costs the 8 s watchdog) | bench 45 s | analyze 45 s | timing-vs-ncu 60 s | optimize 60 s | regress 35 s
#   = about 350 s. The stage stops starting steps when SMOKE_BUDGET_S (default 390) is spent, so it always
#   ends with its summary inside a 7-minute call. Each step prints `PASS|FAIL|SKIP STEP SECONDSs DETAIL`;
#   then the table, OUT_DIR/smoke-summary.md (table, environment, commit: set SMOKE_COMMIT where the copy
#   has no .git) and OUT_DIR/smoke.tar.gz (logs, env.json, run folders). Exit 0 only if every step passed.
#
# Every stage: on a machine without an NVIDIA GPU, exit 2 at once with one line. Otherwise install kernelpro
# without dependencies and without network (the GPU image has CuPy, nvidia-ml-py, click, rich, numpy,
# networkx, matplotlib and pytest; anthropic and kernel_tuner are not needed), then write OUT_DIR/<stage>.log
# (everything printed, each command and its exit status) and OUT_DIR/<stage>.tar.gz (what the stage
# produced). Exit non-zero if any step failed, after running the others.
set -uo pipefail
stages="smoke tests-runner tests-leak tests-e2e tests-other capture timing diagnosis suite-1 suite-2 peer"
stage=${1:?usage: scripts/gpu_acceptance.sh STAGE [OUT_DIR], STAGE one of: $stages}
case " $stages " in *" $stage "*) ;; *) echo "unknown stage $stage (one of: $stages)" >&2; exit 2 ;; esac
if ! command -v nvidia-smi >/dev/null 2>&1 || ! timeout 20 nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_acceptance $stage: no NVIDIA GPU here (nvidia-smi is missing or lists none): nothing run"
  exit 2
fi
t0=$SECONDS
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

gpu_tests() {  # gpu_tests NAME PYTEST-ARGS...: the gpu-marked tests, a missing GPU failing instead of skipping
  local name=$1; shift
  step "$name" env KERNELPRO_REQUIRE_GPU=1 python3 -m pytest -m gpu -v -rs -p no:cacheprovider \
    --junitxml="$work/$name.xml" "$@"
}

smoke() {  # every GPU path once; see the header
  local budget=${SMOKE_BUDGET_S:-390} commit
  commit=${SMOKE_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo "unknown (no .git: set SMOKE_COMMIT)")}
  if git rev-parse HEAD >/dev/null 2>&1 && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit (with uncommitted changes)"
  fi
  rm -rf "$work/steps" "$work/runs"
  mkdir -p "$work/logs"
  : >"$work/steps.tsv"
  local spec name limit left start rc line status detail
  for spec in env:60 backend:45 wall:120 bench:120 analyze:120 timing-vs-ncu:150 optimize:180 regress:120; do
    name=${spec%%:*}; limit=${spec##*:}
    left=$((budget - (SECONDS - t0)))
    start=$SECONDS
    if [ "$left" -lt 15 ]; then
      line="SKIP $name 0s not started: the ${budget} s smoke budget is spent"
    else
      [ "$limit" -gt "$left" ] && limit=$left
      timeout -k 10 "$limit" python3 scripts/smoke.py "$name" "$work" >"$work/logs/$name.log" 2>&1
      rc=$?
      if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        line="FAIL $name $((SECONDS - start))s timed out after $limit s (see logs/$name.log)"
      elif [ -f "$work/steps/$name.result" ]; then
        read -r status detail <"$work/steps/$name.result"
        line="$status $name $((SECONDS - start))s $detail"
      else
        line="FAIL $name $((SECONDS - start))s exit $rc without a result (see logs/$name.log)"
      fi
    fi
    echo "$line" | tee -a "$log"
    echo "$line" >>"$work/steps.tsv"
    case $line in PASS*) ;; *) failed=1 ;; esac
  done
  python3 scripts/smoke.py summary "$work" "$commit" "$((SECONDS - t0))" | tee -a "$log"
  cp "$work/smoke-summary.md" "$out/smoke-summary.md"
}

install_start=$SECONDS
if ! python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >>"$log" 2>&1; then
  line="FAIL install $((SECONDS - install_start))s pip install -e . failed (see $log)"
  echo "$line" | tee -a "$log"
  exit 2
fi
{ echo "install: $((SECONDS - install_start)) s"
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader; ncu --version | tail -n 1
  nvcc --version | tail -n 1; git rev-parse HEAD 2>/dev/null; } >>"$log" 2>&1

case "$stage" in
  smoke)
    smoke ;;
  tests-runner)
    gpu_tests tests-runner tests/test_runner_gpu.py -k "not leak" ;;
  tests-leak)
    gpu_tests tests-leak tests/test_runner_gpu.py -k leak ;;
  tests-e2e)
    gpu_tests tests-e2e tests/test_end_to_end_gpu.py ;;
  tests-other)
    gpu_tests tests-other tests/test_regress.py tests/test_suite.py tests/test_vs_kernel_tuner.py ;;
  capture)
    step capture tests/fixtures/ncu-h100-tools/capture.sh "$work/ncu-h100-tools"
    if [ -f "$work/ncu-h100-tools/planted_tools_raw.csv" ]; then
      cp "$work/ncu-h100-tools/"* tests/fixtures/ncu-h100-tools/
      step capture-tests python3 -m pytest -v -p no:cacheprovider tests/test_tools_capture.py
    fi
    ;;
  timing)
    step repeatability python3 benchmarks/bench_repeatability.py
    step timing-vs-ncu python3 benchmarks/timing_vs_ncu.py --flush both
    ;;
  diagnosis)
    step diagnosis-overhead python3 benchmarks/diagnosis_overhead.py --repeats 3
    for task in transpose histogram softmax; do
      step "analyze-$task" kernelpro analyze "tasks/$task.cu"
    done
    ;;
  suite-1|suite-2)
    pattern='tasks/[a-r]*.cu'; [ "$stage" = suite-2 ] && pattern='tasks/[s-z]*.cu'
    step "$stage" kernelpro suite --tasks "$pattern" --proposer offline --budget "${SUITE_BUDGET:-10}" \
      --time "${SUITE_TIME:-25s}" --results-dir "$work/results"
    ;;
  peer)
    step peer-sweep python3 benchmarks/vs_kernel_tuner.py sweep --out "$work/peer" ;;
esac

tar -czf "$out/$stage.tar.gz" -C "$out" "$stage"
echo "stage $stage: $([ $failed -eq 0 ] && echo all steps passed || echo SOME STEPS FAILED) in $((SECONDS - t0)) s;" \
  "see $log and $out/$stage.tar.gz" | tee -a "$log"
exit $failed
