"""Collect Nsight Compute counters for one kernel, in two stages.

Stage 1 collects only the speed-of-light and roofline metrics (:data:`kernelpro.roofline.STAGE1_METRICS`):
enough to classify the kernel as memory-, compute- or latency-bound. Stage 2 collects the union of the
metrics declared by the micro-profiling tools that apply to that class (:func:`stage2_metrics`), so a
kernel pays only for the counters its diagnosis reads. Every extra metric can cost replay passes, and
``--set full`` replays a kernel ~40 times; two narrow runs are much cheaper.

The ``ncu`` command line (:func:`ncu_command`) and why:

* ``--csv --page raw --print-units base``: one machine-readable row per launch, values in base units
  (bytes, ns), read by :func:`kernelpro.ncu.parse_raw_csv`;
* ``--metrics a,b,c``: exactly the metrics asked for;
* ``--kernel-name-base function --kernel-name NAME --print-kernel-base function``: match and report the
  kernel by its plain function name (no parameters or template arguments), so extern "C" and C++ kernels
  are named the same way;
* ``--launch-skip N --launch-count 1``: skip the harness's warm-up launches and profile one launch;
* ``--target-processes all``: the kernel may run in a child process (a Python worker, a test runner);
* ``--cache-control all`` (ncu's default, made explicit): flush caches before every replay pass, so each
  pass and each candidate starts from the same cold L1/L2 and multi-pass metrics stay consistent;
* ``--clock-control base`` (ncu's default, made explicit): lock the GPU to its base clock so counters and
  durations of different candidates are comparable run to run. Absolute times are therefore at base
  clock; :mod:`kernelpro.roofline` reads its peaks at the same clock, so percentages stay consistent.

Running is done by an injectable *runner* (``argv, timeout -> RunResult``) so the GPU runner's worker
process can call it its own way; :func:`subprocess_runner` is the default.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from kernelpro.errors import KernelproError, ToolchainError
from kernelpro.ncu import NcuKernel, NcuParseError, Value, parse_raw_csv
from kernelpro.roofline import STAGE1_METRICS, SpeedOfLight
from kernelpro.toolchain import INSTALL_HINTS, find_tool

if TYPE_CHECKING:
    from kernelpro.tools import Tool

DEFAULT_TIMEOUT_S = 600.0

# NVIDIA's documented fix for ERR_NVGPUCTRPERM (developer.nvidia.com/ERR_NVGPUCTRPERM).
PERMISSION_FIX = (
    "run ncu with sudo (or as a user with CAP_SYS_ADMIN, or CAP_PERFMON from driver R565), or let all users read "
    "the counters: add `options nvidia NVreg_RestrictProfilingToAdminUsers=0` to a file in /etc/modprobe.d/, "
    "rebuild the initramfs and reboot (in a container: enable it on the host, or start the container with "
    "--cap-add=SYS_ADMIN); see https://developer.nvidia.com/ERR_NVGPUCTRPERM"
)
_UNKNOWN_METRIC = re.compile(r"Failed to find metric\s+(?:regex:)?\^?([A-Za-z0-9_.]+?)(?:\\\.|\(|\$|\s|$)")
_AVAILABLE = re.compile(r"^\s*\d+\.\s+(.+?)\s*$")
_PROFILER_INIT = ("Failed to initialize the profiler", "LibraryNotLoaded")  # ncu's words when it cannot start


class ProfileError(KernelproError):
    """ncu ran but gave no usable counters: no permission, unknown metric, no kernel profiled, a crash.

    ``command`` is the ncu command line that failed (set by :func:`collect`).
    """

    command: tuple[str, ...] = ()

    def with_command(self) -> str:
        """The error and, when known, the ncu command that failed (for a person to rerun by hand)."""
        return f"{self}; command: {shlex.join(self.command)}" if self.command else str(self)


class ProfilerUnavailable(ProfileError):
    """ncu cannot profile anything on this machine: no permission to read the counters (ERR_NVGPUCTRPERM), or
    the profiler cannot initialize (``LibraryNotLoaded``, e.g. in some containers). A permanent cause: retrying
    another kernel will not help."""


@dataclass(frozen=True)
class RunResult:
    """What a runner returns: the exit status and the two output streams."""

    returncode: int
    stdout: str
    stderr: str = ""


Runner = Callable[[Sequence[str], float], RunResult]


STOP_GRACE_S = 10.0  # after SIGINT, how long ncu gets to restore the clocks and exit before SIGKILL


def subprocess_runner(argv: Sequence[str], timeout: float) -> RunResult:
    """Run ``argv`` as a child process in its own process group and capture its output.

    On a timeout the whole group is stopped: ncu *and* the program it profiles (a worker that would
    otherwise be orphaned, holding the GPU). SIGINT first, so ncu can restore the clocks it locked
    (``--clock-control base``), then SIGKILL for whatever is left after :data:`STOP_GRACE_S`.
    """
    try:
        proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                errors="replace", start_new_session=True)
    except OSError as exc:
        raise ToolchainError(f"cannot run `{argv[0]}`: {exc}", fix=INSTALL_HINTS["ncu"]) from exc
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(proc)
        raise ProfileError(f"ncu took more than {timeout:.0f} s; ncu and the profiled program were stopped",
                           fix="profile a smaller problem size, or raise the timeout") from None
    return RunResult(proc.returncode, stdout, stderr)


def stop_process_group(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGINT ``proc``'s process group (it leads one), SIGKILL it after ``grace_s``, and reap ``proc``."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, grace_s)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.communicate(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGINT:  # ncu is gone: make sure the rest of its group is too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        return


@dataclass(frozen=True)
class NcuOptions:
    """How to profile: which kernel, which launch, and ncu's cache/clock control (see the module docstring)."""

    kernel: str | None = None  # function name; None profiles the first launch of any kernel
    launch_skip: int = 0
    launch_count: int = 1
    cache_control: str = "all"
    clock_control: str = "base"
    target_processes: str = "all"
    extra_args: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S


def ncu_command(ncu: str | Path, program: Sequence[str], metrics: Iterable[str], options: NcuOptions) -> list[str]:
    """The full command line: ``ncu <options> <program> <program args>``."""
    names = list(dict.fromkeys(metrics))
    if not names:
        raise ValueError("no metrics to collect")
    if not program:
        raise ValueError("no program to profile")
    argv = [str(ncu), "--csv", "--page", "raw", "--print-units", "base", "--metrics", ",".join(names),
            "--target-processes", options.target_processes, "--cache-control", options.cache_control,
            "--clock-control", options.clock_control,
            "--launch-skip", str(options.launch_skip), "--launch-count", str(options.launch_count)]
    if options.kernel:
        argv += ["--kernel-name-base", "function", "--kernel-name", options.kernel, "--print-kernel-base", "function"]
    return [*argv, *options.extra_args, *program]


@dataclass(frozen=True)
class KernelProfile:
    """The counters of one profiled launch, typed: every metric by its ncu name, with its unit."""

    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    metrics: Mapping[str, Value]
    units: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of the ncu run(s) that produced it
    commands: tuple[tuple[str, ...], ...] = ()

    def number(self, name: str) -> float | None:
        """The numeric value of ``name``; None when absent, empty or not a number."""
        value = self.metrics.get(name)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    def speed_of_light(self) -> SpeedOfLight:
        """The typed stage-1 record (raises :class:`~kernelpro.ncu.MetricError` without stage-1 metrics)."""
        return SpeedOfLight.from_metrics(self.metrics)

    @property
    def duration_s(self) -> float | None:
        value = self.number("gpu__time_duration.sum")
        return None if value is None else value * 1e-9

    def merged(self, other: KernelProfile) -> KernelProfile:
        """This profile with ``other``'s metrics added (``other`` wins where both have one)."""
        return KernelProfile(
            self.kernel, self.grid, self.block, MappingProxyType({**self.metrics, **other.metrics}),
            MappingProxyType({**self.units, **other.units}), self.seconds + other.seconds,
            self.commands + other.commands,
        )

    @classmethod
    def from_kernel(cls, kernel: NcuKernel, seconds: float = 0.0, command: Sequence[str] = ()) -> KernelProfile:
        return cls(kernel.name, kernel.grid, kernel.block, kernel.metrics, kernel.units, seconds,
                   (tuple(command),) if command else ())


def resolve_ncu(ncu: str | Path | None = None) -> Path:
    """The ncu executable: ``ncu`` as given, else found on PATH / in the CUDA folders."""
    if ncu is not None:
        path = Path(ncu)
        if not path.is_file():
            raise ToolchainError(f"ncu not found at {path}", fix=INSTALL_HINTS["ncu"])
        return path
    found = find_tool("ncu", required=False)
    if found is None:
        raise ToolchainError("`ncu` (Nsight Compute) not found on PATH or in the CUDA folders",
                             fix=INSTALL_HINTS["ncu"])
    return found


def collect(
    program: Sequence[str],
    metrics: Iterable[str],
    options: NcuOptions = NcuOptions(),
    *,
    runner: Runner | None = None,
    ncu: str | Path | None = None,
) -> KernelProfile:
    """Run ``program`` under ncu collecting ``metrics``; the profile of the first matching launch.

    Raises :class:`~kernelpro.errors.ToolchainError` when ncu is missing and :class:`ProfileError` for
    a permission error, an unknown metric, no profiled kernel or output that is not a raw CSV report.
    """
    argv = ncu_command(resolve_ncu(ncu), program, metrics, options)
    start = time.perf_counter()
    try:
        result = (runner or subprocess_runner)(argv, options.timeout_s)
        seconds = time.perf_counter() - start
        kernels = _check_output(result, options)
    except ProfileError as exc:
        exc.command = tuple(argv)
        raise
    return KernelProfile.from_kernel(kernels[0], seconds, argv)


def _check_output(result: RunResult, options: NcuOptions) -> list[NcuKernel]:
    text = result.stdout + "\n" + result.stderr
    if "ERR_NVGPUCTRPERM" in text:
        raise ProfilerUnavailable("ncu has no permission to read the GPU performance counters (ERR_NVGPUCTRPERM)",
                                  fix=PERMISSION_FIX)
    if line := next((line for line in text.splitlines() if any(m in line for m in _PROFILER_INIT)), None):
        raise ProfilerUnavailable(f"ncu cannot start its profiler here: {line.strip()}",
                                  fix="run where the driver lets ncu read counters (bare metal or a VM with the "
                                  "GPU passed through; some container sandboxes refuse it), see `kernelpro doctor`")
    if match := _UNKNOWN_METRIC.search(text):
        raise ProfileError(f"ncu does not know the metric {match[1]!r} on this GPU / ncu version",
                           fix="check the name with `ncu --query-metrics` and fix the tool that declares it")
    try:
        kernels = parse_raw_csv(result.stdout)
    except NcuParseError:
        kernels = []
    if options.kernel and kernels:
        matching = [k for k in kernels if k.name == options.kernel]
        if not matching:
            names = ", ".join(dict.fromkeys(k.name for k in kernels))
            raise ProfileError(f"ncu profiled {names} but not {options.kernel!r}",
                               fix="name the kernel as it is declared (its function name, no parameters)")
        kernels = matching
    if kernels:
        return kernels
    if "No kernels were profiled" in text:
        available = [m[1] for line in text.splitlines() if (m := _AVAILABLE.match(line))]
        hint = f" (kernels the program launched: {', '.join(available)})" if available else ""
        which = f"kernel {options.kernel!r}" if options.kernel else "any kernel"
        raise ProfileError(f"ncu profiled no kernel: {which} was not launched{hint}",
                           fix="check the kernel name and --launch-skip, and that the program launches it "
                           "without a CUDA error")
    tail = " | ".join(line.strip() for line in text.strip().splitlines()[-5:])
    raise ProfileError(f"ncu exited with status {result.returncode} without a report: {tail or 'no output'}",
                       fix="run the printed ncu command by hand to see the problem")


def stage2_metrics(bound: str, tools: Iterable[Tool] | None = None) -> tuple[str, ...]:
    """The union of the metrics of the tools that apply to ``bound``, minus what stage 1 collected."""
    if tools is None:
        from kernelpro.tools import all_tools

        tools = all_tools()
    wanted = [m for tool in tools if bound in tool.applies_to for m in tool.metrics]
    return tuple(m for m in dict.fromkeys(wanted) if m not in STAGE1_METRICS)


@dataclass(frozen=True)
class TwoStageProfile:
    """Stage 1, stage 2 and their merge; ``bound`` is the stage-1 class that chose stage 2's metrics."""

    bound: str
    stage1: KernelProfile
    stage2: KernelProfile | None
    profile: KernelProfile  # stage 1 merged with stage 2


def profile_two_stage(
    program: Sequence[str],
    options: NcuOptions = NcuOptions(),
    *,
    runner: Runner | None = None,
    ncu: str | Path | None = None,
    tools: Iterable[Tool] | None = None,
) -> TwoStageProfile:
    """Stage 1 (speed of light), classify, then stage 2 with the metrics the matching tools declare."""
    from kernelpro.roofline import roofline_verdict

    stage1 = collect(program, STAGE1_METRICS, options, runner=runner, ncu=ncu)
    bound = roofline_verdict(stage1.metrics).bound
    wanted = stage2_metrics(bound, tools)
    if not wanted:
        return TwoStageProfile(bound, stage1, None, stage1)
    stage2 = collect(program, wanted, options, runner=runner, ncu=ncu)
    return TwoStageProfile(bound, stage1, stage2, stage1.merged(stage2))
