"""Runner records survive a strict-JSON round trip (the worker pipe and the search journal)."""

from __future__ import annotations

import json

import numpy as np

from kernelpro.runner.records import CheckFailure, ClockSummary, DeviceInfo, Timing, WallVerdict, jsonable

DEVICE = DeviceInfo("NVIDIA H100 80GB HBM3", "9.0", 132, 1_980_000, 2_619_000, 5120, 52_428_800, 85_000_000_000,
                    "00000000:18:00.0")


def test_jsonable_normalizes_numpy_and_non_finite_values() -> None:
    data = jsonable({"i": np.int64(3), "f": np.float32(0.5), "nan": float("nan"), "inf": -np.inf,
                     "t": (1, 2), "a": np.arange(3), 7: "key"})
    assert data == {"i": 3, "f": 0.5, "nan": "nan", "inf": "-inf", "t": [1, 2], "a": [0, 1, 2], "7": "key"}
    json.dumps(data, allow_nan=False)


def test_failure_round_trip() -> None:
    failure = CheckFailure("output", "y[1, 2]: expected 1, got nan",
                           {"index": (1, 2), "got": np.float32("nan"), "size": {"N": np.int32(4)}})
    again = CheckFailure.from_dict(json.loads(json.dumps(failure.to_dict(), allow_nan=False)))
    assert again == failure
    assert again.where == {"index": [1, 2], "got": "nan", "size": {"N": 4}}
    assert str(again) == "output: y[1, 2]: expected 1, got nan"


def test_verdict_round_trip_with_timing() -> None:
    timing = Timing(median_s=1.5e-5, p20_s=1.4e-5, p80_s=1.6e-5, std_s=1e-7, mean_s=1.5e-5, n=3, method="graph",
                    launches_per_sample=67, l2="rotated", buffer_copies=67, converged=True, stop_reason="converged",
                    dropped_throttled=1, throttled=True, elapsed_s=0.21,
                    clocks=ClockSummary(4, 1755, 1980.0, 1980, 2619, 61, ("sw_power_cap",)),
                    samples_s=(1.4e-5, 1.5e-5, 1.6e-5))
    verdict = WallVerdict(
        task="scale", kernel="scale", seed=2**63 + 5,
        failures=(CheckFailure("roofline", "too fast", {"achieved_bytes_per_s": 1e13}),),
        flags=(CheckFailure("throttled", "power cap"),), notes=("SASS not checked",),
        checked={"sizes": ["N=4096"], "input_sets": 4}, timing=timing, device=DEVICE,
        memory={"pool_used_bytes": 0}, seconds=1.25,
    )
    text = verdict.to_json()
    again = WallVerdict.from_json(text)
    assert again == verdict
    assert again.timing.warm is False and again.timing.rel_std == timing.std_s / timing.mean_s
    assert not again.ok and again.reason == "roofline"
    assert again.failed("roofline") == verdict.failures[0]
    assert again.failed("output") is None


def test_passing_verdict_without_timing() -> None:
    verdict = WallVerdict(task="t", kernel="k", seed=1)
    assert verdict.ok and verdict.reason is None
    assert WallVerdict.from_json(verdict.to_json()) == verdict
