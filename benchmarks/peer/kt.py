"""Kernel Tuner's side: the table as a Kernel Tuner cache file, and its strategies replayed on it.

Kernel Tuner's simulation mode (``tune_kernel(..., cache=FILE, simulation_mode=True)``) answers every
configuration from a cache file instead of a GPU, so its strategies run on exactly the measurements the
sweep recorded. The cache is Kernel Tuner's JSON: a header (``device_name``, ``kernel_name``,
``problem_size``, ``tune_params_keys``, ``tune_params``, ``objective``) and ``cache``, mapping
``"v1,v2,..."`` (values in ``tune_params_keys`` order) to a result: the knob values, ``time`` in
milliseconds (or ``"CompilationFailedConfig"`` / ``"RuntimeFailedConfig"`` for a failure) and the
``compile_time`` / ``verification_time`` / ``benchmark_time`` milliseconds that simulated time adds up
(``cache`` must be the last key: see :func:`write_kt_cache`).
kernelpro's evaluation seconds are not split by stage, so they all go to ``benchmark_time``.

The search space handed to Kernel Tuner is every configuration in the table (the task's constrained
space), failures included: they cost an evaluation, as they would on the GPU.
"""

from __future__ import annotations

import functools
import json
import random
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from peer.table import Entry, Table, config_key

STRATEGIES = ("random_sample", "genetic_algorithm", "bayes_opt")
INSTALL = "pip install 'kernelpro[bench]'"
_FAILED = {"compile": "CompilationFailedConfig"}  # any other failing stage: RuntimeFailedConfig
_FAILURE_NAMES = ("CompilationFailedConfig", "RuntimeFailedConfig", "ErrorConfig", "InvalidConfig")


class KernelTunerMissing(Exception):
    """Kernel Tuner is not importable (the message is one line saying how to install it)."""


def require_kernel_tuner() -> ModuleType:
    """The ``kernel_tuner`` module, or :class:`KernelTunerMissing` naming the extra to install."""
    try:
        import kernel_tuner
    except ImportError as exc:
        raise KernelTunerMissing(f"Kernel Tuner is not installed ({exc}): {INSTALL}") from None
    return kernel_tuner


def kernel_tuner_version() -> str:
    from importlib.metadata import version

    return version("kernel_tuner")


BO_DEFAULT_POPSIZE = 20  # bayes_opt's initial sample; it raises on a space smaller than that


def strategy_options(strategy: str, budget: int, start: list[Any] | None = None,
                     space_size: int | None = None) -> dict[str, Any]:
    """Options passed to a Kernel Tuner strategy: its own defaults, the evaluation budget, and two documented
    exceptions (and, on a space smaller than Bayesian optimization's initial sample, that sample capped at
    the space, where Kernel Tuner would raise).

    - The genetic algorithm starts its first population from ``start`` (``x0``, its own option for the first
      individual), the configuration every strategy starts from for this seed. Random sampling and Bayesian
      optimization accept no ``x0``; their traces begin with ``start`` instead (see :func:`kt_trace`).
    - Bayesian optimization's default method, ``multi-ultrafast``, refits its model only when the last
      evaluations took at least 5x as long as the last prediction, else every 5th round. On a GPU an
      evaluation takes seconds and a prediction milliseconds, so it refits every round; in simulation an
      evaluation is a lookup taking microseconds, so it would refit every 5th round only, a handicap it
      never has on a GPU. ``multi-fast`` is the same method refitting every round: what ``multi-ultrafast``
      does on a GPU.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown Kernel Tuner strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    options: dict[str, Any] = {"max_fevals": budget}
    if strategy == "genetic_algorithm" and start is not None:
        options["x0"] = list(start)
    if strategy == "bayes_opt":
        options["method"] = "multi-fast"
        if space_size is not None and space_size < BO_DEFAULT_POPSIZE:
            options["popsize"] = space_size
    return options


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Every random source Kernel Tuner draws from, seeded with ``seed``, restored afterwards: Python's
    ``random`` and NumPy's global generator (its strategies and scikit-learn's GP), and the Latin hypercube
    sampler of Bayesian optimization, which scipy would otherwise seed from fresh OS entropy."""
    from kernel_tuner.strategies import bayes_opt

    py_state, np_state = random.getstate(), np.random.get_state()
    sampler = bayes_opt.LatinHypercube
    random.seed(seed)
    np.random.seed(seed)
    bayes_opt.LatinHypercube = functools.partial(sampler, rng=np.random.default_rng(seed))
    try:
        yield
    finally:
        bayes_opt.LatinHypercube = sampler
        random.setstate(py_state)
        np.random.set_state(np_state)


# -- the cache file ------------------------------------------------------------------------------------


def to_kt_cache(table: Table) -> dict[str, Any]:
    """The table as a Kernel Tuner cache (a JSON-able dict)."""
    cache = {}
    for entry in table.entries:
        result: dict[str, Any] = dict(entry.knobs)
        milliseconds = 0.0 if entry.seconds is None else entry.seconds * 1e3
        if entry.ok:
            result.update(time=entry.time_us / 1e3, times=[entry.time_us / 1e3])
        else:
            stage = (entry.failure or "").split(":", 1)[0].strip()
            kind = stage if stage in _FAILURE_NAMES else _FAILED.get(stage, "RuntimeFailedConfig")
            result.update(time=kind, kernelpro_failure=entry.failure)
        result.update(compile_time=0.0, verification_time=0.0, benchmark_time=milliseconds,
                      strategy_time=0.0, framework_time=0.0)
        cache[table.key(entry.knobs)] = result
    return {"device_name": table.gpu, "kernel_name": table.kernel, "problem_size": [1],
            "tune_params_keys": list(table.knobs), "tune_params": {n: list(v) for n, v in table.knobs.items()},
            "objective": "time", "kernelpro_task": table.task,
            "kernelpro_default": table.default and dict(table.default), "kernelpro_synthetic": table.synthetic,
            "cache": cache}


def from_kt_cache(data: Mapping[str, Any], *, environment: Mapping[str, Any] | None = None) -> Table:
    """A table back from a Kernel Tuner cache written by :func:`to_kt_cache` (or read by Kernel Tuner's
    ``util.read_cache``, which adds an ``__error__`` object to failed results)."""
    names = list(data["tune_params_keys"])
    entries = []
    for result in data["cache"].values():
        knobs = {n: result[n] for n in names}
        benchmark_ms = result.get("benchmark_time")
        seconds = None if benchmark_ms is None else benchmark_ms / 1e3
        time = result.get("time")
        if isinstance(time, str) or "__error__" in result:
            failure = result.get("kernelpro_failure") or f"kernel_tuner: {time}"
            entries.append(Entry(knobs, None, failure, seconds))
        else:
            entries.append(Entry(knobs, float(time) * 1e3, None, seconds))
    return Table(data.get("kernelpro_task", data["kernel_name"]), data["kernel_name"],
                 data["tune_params"], data.get("kernelpro_default"), tuple(entries),
                 environment or {"gpu": data["device_name"]}, bool(data.get("kernelpro_synthetic", False)))


def write_kt_cache(table: Table, path: Path) -> Path:
    """Writes the cache compactly with ``cache`` last: Kernel Tuner takes a file that does not end in ``}}}``
    for an unfinished tuning session and appends closing brackets, which would corrupt an indented file."""
    path.write_text(json.dumps(to_kt_cache(table)) + "\n")
    return path


# -- replaying a strategy ------------------------------------------------------------------------------


def kt_trace(table: Table, strategy: str, seed: int, budget: int, cache_file: Path | None = None) -> list[str]:
    """The configurations Kernel Tuner's ``strategy`` evaluates on the table, each once, in order.

    Kernel Tuner has no seed argument: every random source it uses is seeded for the run (:func:`_seeded`).
    The trace begins with ``table.start(seed)``, the configuration every strategy starts from (the genetic
    algorithm as its first individual, the others as the measured starting point, like kernelpro's
    baseline); Kernel Tuner counts evaluations as unique configurations, failures included, and so does
    the trace.
    """
    kernel_tuner = require_kernel_tuner()
    from constraint import FunctionConstraint  # python-constraint2, a Kernel Tuner dependency

    valid = set(table.by_key)

    def in_table(*values: Any) -> bool:
        return config_key(values) in valid

    start = table.start(seed)
    options = strategy_options(strategy, budget, [start[n] for n in table.knobs], len(table.entries))
    with tempfile.TemporaryDirectory() as tmp, _seeded(seed):
        path = cache_file or write_kt_cache(table, Path(tmp) / "cache.json")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Kernel Tuner warns about every sample size it adjusts
            results, _ = kernel_tuner.tune_kernel(
                table.kernel, "", (1,), [], {n: list(v) for n, v in table.knobs.items()},
                restrictions=[FunctionConstraint(in_table)], cache=str(path), simulation_mode=True,
                strategy=strategy, strategy_options=options, quiet=True, verbose=False)
    trace = [table.key(start)]
    for result in results:
        key = config_key(result[n] for n in table.knobs)
        if key in valid and key not in trace:
            trace.append(key)
    return trace[:budget]
