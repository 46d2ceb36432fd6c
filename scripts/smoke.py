"""The steps of ``scripts/gpu_acceptance.sh smoke``: one short pass over every GPU path of kernelpro.

    python3 scripts/smoke.py STEP OUT_DIR        (from the repository root, on a GPU machine)
    python3 scripts/smoke.py summary OUT_DIR     (the table, OUT_DIR/smoke-summary.md)

Each step prints what it did (the log), writes ``OUT_DIR/steps/STEP.result`` (``PASS|FAIL|SKIP <detail>``)
and exits 0 (pass), 1 (fail) or 3 (skip). The shell script runs each under its own ``timeout``, prints
``STATUS STEP SECONDSs DETAIL`` and appends it to ``OUT_DIR/steps.tsv``; ``summary`` turns that file into
the table. Steps (the shell's order):

* ``env``: GPU, driver, CUDA, ncu, compute-sanitizer, CuPy, NVML clocks; whether ncu can read counters
  and whether compute-sanitizer supports the device (probed on one launch of ``scale``), kept in
  ``OUT_DIR/env.json`` for the later steps, which SKIP with the reason instead of failing confusingly;
* ``backend``: the CuPy backend in this process: module load, launch, 64 KiB of dynamic shared memory, an
  event-timed sample, a graph-timed sample, the spin and read-sweep helpers (NVRTC), NVML;
* ``wall``: a correct candidate and planted wrong ones through the supervised worker, including a hang
  (the watchdog kills it, the worker restarts, the next candidate passes) and an illegal address (the
  context is lost, the worker restarts, the next candidate passes);
* ``bench``: ``kernelpro bench`` cold and warm on a µs kernel and a >= 50 µs kernel, first sample next to
  the median;
* ``analyze``: ``kernelpro analyze`` (two-stage ncu) on one task, with the tools that fired;
* ``timing-vs-ncu``: ``benchmarks/timing_vs_ncu.py`` on two tasks, clean and dirty L2 flush;
* ``optimize``: ``kernelpro optimize`` with the offline proposer, 4 evaluations, final sanitizer check;
* ``regress``: ``kernelpro regress`` on that run (exit 0) and on a copy with a slowed winner (exit 1).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WALL = ROOT / "tests" / "kernels" / "wall"
SCALE = WALL / "scale.cu"  # the µs kernel (4096 floats)
LONG_TASK = ROOT / "tasks" / "softmax.cu"  # >= 50 µs on an H100 (256 MiB moved)
ANALYZE_TASK = ROOT / "tasks" / "softmax.cu"
TIMING_TASKS = ("softmax", "rmsnorm")
OPTIMIZE_TASK = SCALE
HANG_IDLE_S = 8.0  # the wall's watchdog in this step: a hung kernel is killed after this much silence
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
EXIT = {PASS: 0, FAIL: 1, SKIP: 3}
# The wall step's sequence: (label, planted file or None for the task's own correct kernel, expected reason).
WALL_SEQUENCE: tuple[tuple[str, str | None], ...] = (
    ("correct", None),
    ("noop", "scale_noop.cu"),
    ("out-of-bounds", "scale_out_of_bounds.cu"),
    ("modifies-input", "scale_modifies_input.cu"),
    ("hang", "scale_infinite_loop.cu"),
    ("after-hang", None),
    ("illegal-address", "scale_illegal_address.cu"),
    ("after-fault", None),
)


@dataclass(frozen=True)
class StepResult:
    """A step's outcome: PASS, FAIL or SKIP and one line saying what it found."""

    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status} {' '.join(self.detail.split())}"


# --- helpers ----------------------------------------------------------------------------------------
def run(argv: Sequence[str], timeout: float, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run a command, echo it and its output into the log; a missing program or a timeout is exit 127/124."""
    print(f"$ {' '.join(map(str, argv))}", flush=True)
    try:
        done = subprocess.run(list(map(str, argv)), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              errors="replace")
    except FileNotFoundError as exc:
        done = subprocess.CompletedProcess(argv, 127, "", str(exc))
    except subprocess.TimeoutExpired as exc:
        done = subprocess.CompletedProcess(argv, 124, _text(exc.stdout), _text(exc.stderr) + f"\ntimed out "
                                           f"after {timeout:g} s")
    print(done.stdout[-6000:], done.stderr[-4000:], f"(exit {done.returncode})", sep="\n", flush=True)
    return done


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


def kernelpro(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "kernelpro", *args], timeout)


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def planted_expectation(path: Path) -> set[str]:
    """The checks a planted candidate may fail (its ``// expect:`` header lines)."""
    return {word for line in path.read_text().splitlines() if line.startswith("// expect:")
            for word in line.split(":", 1)[1].split()}


def load_env(out: Path) -> dict[str, Any]:
    path = out / "env.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def needs(env: dict[str, Any], what: str) -> StepResult | None:
    """A SKIP when the env step found ``what`` (``ncu`` counters, ``sanitizer``) unusable; None when usable."""
    if not env:
        return StepResult(SKIP, "the env step left no env.json (it failed or timed out)")
    if what == "ncu" and not env.get("ncu_counters"):
        return StepResult(SKIP, f"ncu cannot read counters here: {env.get('ncu_reason', 'unknown')}")
    return None


# --- env ----------------------------------------------------------------------------------------------
def ncu_verdict(error: BaseException | None) -> tuple[bool, str]:
    """Whether ncu could read a counter, and why not (from the error the probe raised)."""
    from kernelpro.profile import ProfileError, ProfilerUnavailable

    if error is None:
        return True, "read gpu__time_duration.sum"
    kind = "permanent: " if isinstance(error, ProfilerUnavailable) else ""
    text = error.with_command() if isinstance(error, ProfileError) else f"{type(error).__name__}: {error}"
    return False, kind + " | ".join(line.strip() for line in text.splitlines() if line.strip())[:400]


def sanitizer_verdict(output: str, exit_code: int | None) -> tuple[bool, str]:
    """Whether compute-sanitizer ran the probe to a clean verdict, and what it said otherwise."""
    from kernelpro.runner.sanitizer import parse_sanitizer_output

    if "not supported" in output.lower():
        line = next(line for line in output.splitlines() if "not supported" in line.lower())
        return False, f"device not supported: {line.strip()[:200]}"
    report = parse_sanitizer_output(output, "memcheck", exit_code)
    if report.conclusive and report.ok and exit_code == 0:
        return True, "memcheck: 0 errors on a correct kernel"
    tail = last_line(output)[:200]
    return False, f"memcheck gave no clean verdict (errors {report.errors}, exit {exit_code}): {tail}"


def _version(argv: Sequence[str]) -> str:
    done = run(argv, 30)
    return last_line(done.stdout) if done.returncode == 0 else f"not available ({last_line(done.stderr)[:120]})"


def step_env(out: Path) -> StepResult:
    from kernelpro.compiler import Compiler, CompileRequest, default_arch
    from kernelpro.profile import NcuOptions, collect
    from kernelpro.runner.evaluate import kernel_symbol
    from kernelpro.runner.profiled_program import launch_once_program, make_launch_once_job
    from kernelpro.runner.sanitizer import sanitizer_command
    from kernelpro.task_loader import load_task
    from kernelpro.toolchain import find_tool

    env: dict[str, Any] = {}
    smi = run(["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,"
               "power.draw,persistence_mode", "--format=csv,noheader"], 30)
    env["gpu"] = smi.stdout.strip() or "nvidia-smi failed"
    env["nvcc"] = _version(["nvcc", "--version"])
    env["ncu"] = _version(["ncu", "--version"])
    env["compute-sanitizer"] = _version(["compute-sanitizer", "--version"])
    import cupy

    env["cupy"] = cupy.__version__
    env["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
    env["cuda_driver"] = cupy.cuda.runtime.driverGetVersion()
    from kernelpro.runner.nvml import NvmlMonitor

    monitor = NvmlMonitor.open()
    if monitor is None:
        env["nvml"] = "not available (pip install nvidia-ml-py)"
    else:
        state, (max_sm, max_mem) = monitor.read(), monitor.max_clocks()
        env["nvml"] = (f"SM {state.sm_clock_mhz} MHz (max {max_sm}), memory {state.memory_clock_mhz} MHz (max "
                       f"{max_mem}), {state.temperature_c} C, throttled {state.throttled}")
        monitor.close()
    task = load_task(SCALE)
    result = Compiler().compile(CompileRequest(task.source, default_arch(), task.defines(), source_name=str(SCALE)))
    symbol = kernel_symbol(result, task.kernel)
    env["arch"] = default_arch()
    error: BaseException | None = None
    if find_tool("ncu", required=False) is None:
        env["ncu_counters"], env["ncu_reason"] = False, "ncu not found"
    else:
        try:
            with launch_once_program(task, result.cubin, symbol, task.default_knobs(), 2) as program:
                collect(program, ["gpu__time_duration.sum"], NcuOptions(kernel="scale", launch_skip=1,
                                                                         timeout_s=120))
        except Exception as exc:  # noqa: BLE001 - whatever stops ncu is what the env step reports
            error = exc
        env["ncu_counters"], env["ncu_reason"] = ncu_verdict(error)
    exe = find_tool("compute-sanitizer", required=False)
    if exe is None:
        env["sanitizer"], env["sanitizer_reason"] = False, "compute-sanitizer not found"
    else:
        job = out / "sanitizer-probe.json"
        job.write_text(json.dumps(make_launch_once_job(task, result.cubin, symbol, task.default_knobs(), 1, None)))
        done = run(sanitizer_command(exe, "memcheck", job), 120)
        env["sanitizer"], env["sanitizer_reason"] = sanitizer_verdict(done.stdout + done.stderr, done.returncode)
    (out / "env.json").write_text(json.dumps(env, indent=2))
    name = env["gpu"].split(",")[0]
    return StepResult(PASS, f"{name}; CUDA runtime {env['cuda_runtime']}, driver {env['cuda_driver']}; CuPy "
                      f"{env['cupy']}; ncu counters: {'yes' if env['ncu_counters'] else 'NO'} ({env['ncu_reason']});"
                      f" compute-sanitizer: {'yes' if env['sanitizer'] else 'NO'} ({env['sanitizer_reason']})")


# --- backend ------------------------------------------------------------------------------------------
BACKEND_SOURCE = """extern "C" __global__ void fill(float* y, int n) {
    extern __shared__ float tile[];
    for (int i = threadIdx.x; i < n; i += blockDim.x) tile[i] = i;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = tile[n - 1 - i];
}
extern "C" __global__ void bump(float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += 1.0f;
}
"""


def step_backend(out: Path) -> StepResult:
    import numpy as np

    from kernelpro.compiler import Compiler, CompileRequest, default_arch
    from kernelpro.runner.backend import Geometry
    from kernelpro.runner.device import CupyBackend

    result = Compiler().compile(CompileRequest(BACKEND_SOURCE, default_arch()))
    if not result.ok:
        return StepResult(FAIL, f"nvcc failed on the backend's test kernels: {result.errors[:1]}")
    backend = CupyBackend()
    notes: list[str] = []
    try:
        info = backend.device_info()
        fill = backend.load_kernel(str(result.cubin), "fill")
        n = 16384  # 64 KiB of dynamic shared memory: needs the opt-in attribute
        y = backend.xp.zeros(n, dtype=np.float32)
        backend.launch(fill, Geometry((1, 1, 1), (256, 1, 1), n * 4), (y, np.int32(n)))
        backend.synchronize()
        if not np.array_equal(backend.to_host(y), np.arange(n, dtype=np.float32)[::-1]):
            return StepResult(FAIL, "the 64 KiB dynamic-shared-memory kernel computed the wrong values")
        bump = backend.load_kernel(str(result.cubin), "bump")
        geometry, args = Geometry((n // 256, 1, 1), (256, 1, 1)), (y, np.int32(n))
        timings = {}
        for label, launches, flush, graph in (("events cold", 1, True, False), ("events warm", 1, False, False),
                                              ("graph x16 cold", 16, True, True), ("graph x16 warm", 16, False, True)):
            runner = backend.timed_runner(bump, geometry, [args], launches, flush, graph)
            samples = sorted(runner.sample() / launches for _ in range(21))
            timings[label] = (runner.method, samples[10])
            runner.close()
        state = backend.gpu_state()
    finally:
        backend.close()
    for label, (method, seconds) in timings.items():
        print(f"{label}: method {method}, median {seconds * 1e6:.2f} us")
    if timings["graph x16 cold"][0] != "graph":
        notes.append("graph capture FAILED (timed as batch)")
    if backend.helpers_error:
        notes.append(f"spin/read-sweep helpers not built ({backend.helpers_error[:120]})")
    if backend.context_lost:
        notes.append("the context was lost at close")
    nvml = f"NVML SM {state.sm_clock_mhz} MHz, {state.temperature_c} C" if state else "NVML not available"
    detail = (f"{info.name} sm_{info.compute_capability.replace('.', '')}, {info.sm_count} SMs, L2 "
              f"{info.l2_bytes >> 20} MiB; 64 KiB dyn smem ok; " +
              ", ".join(f"{k} {v[1] * 1e6:.2f} us" for k, v in timings.items()) + f"; {nvml}")
    if state is None:
        notes.append("no NVML reading")
    return StepResult(FAIL if notes else PASS, detail + ("; " + "; ".join(notes) if notes else ""))


# --- wall -----------------------------------------------------------------------------------------------
def run_wall_sequence(evaluator: Any, task: Any, sequence: Sequence[tuple[str, str | None]],
                      options: Any, timed_options: Any) -> tuple[list[str], list[str]]:
    """Run ``sequence`` through ``evaluator``; the table rows and the problems found.

    A planted candidate must fail one of its ``// expect:`` checks. A hang or a fault must cost exactly one
    worker restart, and the candidate after it must pass in a new worker (it is not blamed for the
    previous one's fault).
    """
    rows, problems = [], []
    for index, (label, planted) in enumerate(sequence):
        restarts, pid_before = evaluator.supervisor.restarts, evaluator.supervisor.worker_pid
        source = task.source if planted is None else (WALL / "planted" / planted).read_text()
        expected = {"pass"} if planted is None else planted_expectation(WALL / "planted" / planted)
        started = time.monotonic()
        verdict = evaluator.check(task, source, options=timed_options if index == 0 else options,
                                  source_name=planted or "scale.cu")
        seconds = time.monotonic() - started
        got = "pass" if verdict.ok else verdict.reason
        restarted = evaluator.supervisor.restarts - restarts
        rows.append(f"{label:<16} {got:<14} expected {'/'.join(sorted(expected)):<14} {seconds:6.1f} s  "
                    f"restarts +{restarted}  worker {pid_before} -> {evaluator.supervisor.worker_pid}")
        if got not in expected:
            first = str(verdict.failures[0]) if verdict.failures else "passed"
            problems.append(f"{label}: got {got}, expected {'/'.join(sorted(expected))} ({first[:160]})")
            if index == 0:  # the task's own kernel fails: nothing after it can be judged
                break
        if got in ("timeout", "cuda-error") and restarted != 1:
            problems.append(f"{label}: {got} but the worker was restarted {restarted} times, not once")
        if label.startswith("after-") and index > 0:
            previous = sequence[index - 1][0]
            if not verdict.ok:
                problems.append(f"{label}: the correct candidate after the {previous} was blamed: {got}")
    return rows, problems


def step_wall(out: Path) -> StepResult:
    from kernelpro.compiler import Compiler
    from kernelpro.runner.evaluate import Evaluator, WallOptions
    from kernelpro.runner.stats import StopRule
    from kernelpro.runner.supervisor import Supervisor
    from kernelpro.runner.timing import TimingOptions
    from kernelpro.task_loader import load_task

    task = load_task(SCALE)
    timed = WallOptions(timing=TimingOptions(stop=StopRule(min_samples=10, max_time_s=0.5, hard_limit_s=20.0)),
                        idle_timeout_s=HANG_IDLE_S, timeout_s=120.0, input_sets=2, extra_size_sets=1)
    quick = replace(timed, time=False)
    with Evaluator(supervisor=Supervisor(timeout=120, idle_timeout=HANG_IDLE_S), compiler=Compiler()) as evaluator:
        rows, problems = run_wall_sequence(evaluator, task, WALL_SEQUENCE, quick, timed)
        restarts = evaluator.supervisor.restarts
    print("\n".join(rows))
    if problems:
        return StepResult(FAIL, "; ".join(problems))
    return StepResult(PASS, f"{len(rows)} candidates as expected (correct, {len(rows) - 5} planted wrong, hang killed "
                      f"after {HANG_IDLE_S:g} s of silence, illegal address); {restarts} worker restarts, the "
                      "candidate after each passed")


# --- bench --------------------------------------------------------------------------------------------
def bench_row(label: str, data: dict[str, Any]) -> str:
    """One row: median and first sample in µs, their ratio, the method and the L2 mode."""
    timing = data.get("timing") or {}
    median, first = timing.get("median_s"), timing.get("first_sample_s")
    if not median:
        reason = data.get("failures", [{}])[0].get("message", "no timing") if data.get("failures") else "no timing"
        return f"{label:<22} FAILED: {reason[:160]}"
    first_text = f"{first * 1e6:10.2f}" if first is not None else f"{'n/a':>10}"
    ratio = f"{first / median:6.2f}x" if first is not None else "    n/a"
    return (f"{label:<22} median {median * 1e6:10.2f} us  first {first_text} us  {ratio}  "
            f"{timing.get('method')} x{timing.get('launches_per_sample')}  {timing.get('l2')}")


def step_bench(out: Path) -> StepResult:
    rows, problems, medians = [], [], {}
    for path, name in ((SCALE, "scale (us)"), (LONG_TASK, f"{LONG_TASK.stem} (>=50 us)")):
        for warm in (False, True):
            label = f"{name} {'warm' if warm else 'cold'}"
            done = kernelpro("bench", str(path), "--json", "--seed", "1", *(["--warm"] if warm else []), timeout=120)
            try:
                data = json.loads(done.stdout)
            except ValueError:
                problems.append(f"{label}: exit {done.returncode}: {last_line(done.stderr)[:160]}")
                rows.append(f"{label:<22} FAILED")
                continue
            rows.append(bench_row(label, data))
            timing = data.get("timing") or {}
            medians[label] = timing.get("median_s")
            if done.returncode != 0:
                problems.append(f"{label}: exit {done.returncode}")
            elif path == SCALE and timing.get("method") != "graph":
                problems.append(f"{label}: timed with {timing.get('method')}, not a graph")
            elif path == LONG_TASK and (timing.get("median_s") or 0) < 50e-6:
                problems.append(f"{label}: median {timing.get('median_s', 0) * 1e6:.1f} us, under 50 us")
    print("\n".join(rows))
    detail = " | ".join(" ".join(row.split()) for row in rows)
    return StepResult(FAIL if problems else PASS, ("; ".join(problems) + " || " if problems else "") + detail)


# --- analyze and timing-vs-ncu ---------------------------------------------------------------------------
def step_analyze(out: Path) -> StepResult:
    skip = needs(load_env(out), "ncu")
    if skip:
        return skip
    done = kernelpro("analyze", str(ANALYZE_TASK), "--json", "--plot", str(out / "roofline.png"), timeout=240)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        return StepResult(FAIL, f"exit {done.returncode}: {last_line(done.stderr)[:300]}")
    diagnosis = report["diagnosis"]
    detail = (f"{ANALYZE_TASK.stem}: {diagnosis.get('verdict') or diagnosis.get('bound')}; fired: "
              f"{', '.join(diagnosis.get('fired', [])) or 'none'}; tool errors: {len(diagnosis.get('errors', {}))}")
    ok = done.returncode == 0 and diagnosis.get("bound") is not None
    return StepResult(PASS if ok else FAIL, detail + ("" if ok else f"; exit {done.returncode}"))


def step_timing_vs_ncu(out: Path) -> StepResult:
    skip = needs(load_env(out), "ncu")
    if skip:
        return skip
    done = run([sys.executable, str(ROOT / "benchmarks" / "timing_vs_ncu.py"), *TIMING_TASKS, "--flush", "both"], 300)
    rows = [line for line in done.stdout.splitlines() if line.split(" ", 1)[0] in TIMING_TASKS]
    ratios = [f"{row.split()[0]} {m[1]}" for row in rows if (m := re.search(r"\s(\d+\.\d{3})\s+(PASS|FAIL)", row))]
    detail = f"{last_line(done.stdout) or last_line(done.stderr)}; kp/ncu: {', '.join(ratios) or 'none'}"
    return StepResult(PASS if done.returncode == 0 else FAIL, detail)


# --- optimize and regress --------------------------------------------------------------------------------
def run_dir(out: Path) -> Path:
    return out / "runs" / OPTIMIZE_TASK.stem


def step_optimize(out: Path) -> StepResult:
    target = run_dir(out)
    done = kernelpro("optimize", str(OPTIMIZE_TASK), "--proposer", "offline", "--budget", "4", "--time", "2m",
                     "--out", str(target), timeout=300)
    report = target / "report.md"
    if done.returncode != 0 or not report.is_file():
        return StepResult(FAIL, f"exit {done.returncode}: {last_line(done.stderr)[:300]}")
    text = report.read_text()
    final = next((line for line in text.splitlines() if line.startswith("- final check:")), "no final check line")
    profiling = next((line for line in text.splitlines() if line.startswith("- profiling:")), "")
    problems = [] if (target / "best.cu").is_file() else ["no best.cu"]
    if "passed the wall again" not in final:
        problems.append("the final check did not pass")
    env = load_env(out)
    if env.get("sanitizer") and "gave no verdict" in final:
        problems.append("compute-sanitizer worked in the env step but gave no verdict here")
    return StepResult(FAIL if problems else PASS, "; ".join([*problems, final[2:], profiling[2:]]))


def step_regress(out: Path) -> StepResult:
    sys.path.insert(0, str(ROOT / "tests"))
    from planted_runs import plant_slower_winner

    target = run_dir(out)
    if not (target / "best.cu").is_file():
        return StepResult(SKIP, "no run to regress (the optimize step failed)")
    same = kernelpro("regress", str(target), "--junit", str(out / "regress.xml"), timeout=150)
    slow_dir = out / "runs" / f"{OPTIMIZE_TASK.stem}-slowed"
    if not slow_dir.exists():
        plant_slower_winner(target, slow_dir)
    slow = kernelpro("regress", str(slow_dir), "--junit", str(out / "regress-slowed.xml"), timeout=150)
    detail = f"run: exit {same.returncode} (want 0); slowed winner: exit {slow.returncode} (want 1)"
    return StepResult(PASS if (same.returncode, slow.returncode) == (0, 1) else FAIL, detail)


STEPS: dict[str, Callable[[Path], StepResult]] = {
    "env": step_env, "backend": step_backend, "wall": step_wall, "bench": step_bench, "analyze": step_analyze,
    "timing-vs-ncu": step_timing_vs_ncu, "optimize": step_optimize, "regress": step_regress,
}


# --- summary --------------------------------------------------------------------------------------------
def summary_table(lines: Sequence[str]) -> str:
    """The Markdown table of ``STATUS STEP SECONDSs DETAIL`` lines."""
    table = ["| step | result | seconds | detail |", "| --- | --- | --- | --- |"]
    for line in lines:
        status, step, seconds, detail = (line.split(" ", 3) + ["", "", "", ""])[:4]
        table.append(f"| {step} | {status} | {seconds.rstrip('s')} | {detail.replace('|', '/')} |")
    return "\n".join(table)


def write_summary(out: Path, commit: str, total_s: float | None = None) -> str:
    """``OUT/smoke-summary.md``: the table, the environment and the commit; returns its text."""
    lines = [line for line in (out / "steps.tsv").read_text().splitlines() if line.strip()] \
        if (out / "steps.tsv").is_file() else []
    passed = sum(line.startswith(f"{PASS} ") for line in lines)
    env = load_env(out)
    text = [f"# kernelpro GPU smoke: {passed}/{len(lines)} steps passed", "",
            f"commit `{commit}`" + (f", {total_s:.0f} s in all (install included)" if total_s else ""), "",
            summary_table(lines), "", "## Environment", ""]
    text += [f"- {key}: {value}" for key, value in env.items()] or ["- (the env step wrote nothing)"]
    body = "\n".join(text) + "\n"
    (out / "smoke-summary.md").write_text(body)
    return body


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or (args[0] not in STEPS and args[0] != "summary"):
        print(f"usage: smoke.py {{{'|'.join(STEPS)}|summary}} OUT_DIR [COMMIT [TOTAL_S]]", file=sys.stderr)
        return 2
    step, out = args[0], Path(args[1])
    out.mkdir(parents=True, exist_ok=True)
    # `timeout` stops a step with SIGTERM: exit through Python, so open evaluators kill their workers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(124))
    if step == "summary":
        print(write_summary(out, args[2] if len(args) > 2 else "unknown",
                            float(args[3]) if len(args) > 3 else None))
        return 0
    try:
        result = STEPS[step](out)
    except Exception as exc:  # noqa: BLE001 - a step that raises is a failed step, with its reason
        import traceback

        traceback.print_exc()
        result = StepResult(FAIL, f"{type(exc).__name__}: {exc}")
    (out / "steps").mkdir(exist_ok=True)
    (out / "steps" / f"{step}.result").write_text(result.line() + "\n")
    print(result.line())
    return EXIT[result.status]


if __name__ == "__main__":
    sys.exit(main())
