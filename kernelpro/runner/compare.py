"""Is an output close enough to the reference? The tolerance rule, and where it fails.

**Float outputs** pass only when all three rules hold:

1. *NaN/Inf match*: where the reference is NaN the output is NaN, where it is +Inf (-Inf) the
   output is +Inf (-Inf), and nowhere else is the output NaN or Inf.
2. *Elementwise*: ``|got - expected| <= atol + rtol * |expected|`` on every element where both are
   finite, with ``task.tolerance_for(arg)``.
3. *Relative L2*: ``||got - expected||_2 <= max(rtol, 4 ulp) * ||expected||_2`` over those
   elements (skipped when ``||expected||_2 = 0``). Rule 2 alone passes anything within ``atol``
   of a reference whose values are all below ``atol`` (an all-zero output "matches" a softmax over
   262144 columns, or any output on the wall's 1e-30-scaled inputs). Rule 3 asks the output as a
   whole to be as relatively accurate as ``rtol`` asks of each element, which a legitimate
   reordering meets by orders of magnitude (its error is a few ulps of the largest partial sums)
   and a wrong output misses by orders of magnitude (relative error ~1 for zeros). The floor of 4
   ulps of the dtype keeps an ``rtol = 0`` tolerance from demanding bit-exact results. A task whose
   outputs are small only because of cancellation (big terms summing to ~0) may need a larger
   ``rtol`` on that output.

**Integer and bool outputs** must match exactly (bit for bit).

A failure is a :class:`Mismatch` naming the rule, the first bad element as a multi-dimensional
index (the largest error for rule 3), expected and got there, whether that element still holds the
poison pattern (never written), how many elements fail, and the max absolute / relative errors.
Arrays are processed in chunks, so a 64M-element output costs a few chunk-sized temporaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernelpro.runner.buffers import is_poison, unsigned_view
from kernelpro.runner.inputs import as_float64
from kernelpro.task import FLOAT_DTYPES, Tolerance

# Unit roundoff (half an ulp at 1.0 is eps/2; we use eps = the ulp of 1.0) per float dtype.
ULP: dict[str, float] = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}
GLOBAL_FLOOR_ULPS = 4.0
CHUNK = 1 << 22


@dataclass(frozen=True)
class Mismatch:
    """Why an output failed: the rule, where, and how badly."""

    rule: str  # "nan-inf" | "elementwise" | "relative-l2" | "exact"
    bad: int  # elements failing rules 1-2 (or differing, for exact); 0 when only rule 3 fails
    total: int
    index: tuple[int, ...]  # first bad element; for relative-l2 the element with the largest error
    expected: float | int
    got: float | int
    never_written: bool  # the element still holds the poison pattern
    max_abs_err: float
    max_rel_err: float
    rel_l2_err: float | None
    bound: float | None  # the relative-L2 bound, for rule 3
    atol: float
    rtol: float

    def describe(self, name: str) -> str:
        """One line: the element, expected vs got, and the error measures."""
        at = f"{name}[{', '.join(map(str, self.index))}]"
        got = "the poison value (never written)" if self.never_written else _fmt(self.got)
        if self.rule == "relative-l2":
            return (f"{name}: relative L2 error {_fmt(self.rel_l2_err)} > {_fmt(self.bound)} although every element "
                    f"is within atol {_fmt(self.atol)} (the reference is small next to atol, so only its relative "
                    f"accuracy counts); largest error at {at}: expected {_fmt(self.expected)}, got {got}")
        head = f"{at}: expected {_fmt(self.expected)}, got {got}"
        count = f"{self.bad} of {self.total} elements wrong"
        if self.rule == "exact":
            return f"{head} (exact match required); {count}"
        if self.rule == "nan-inf":
            return f"{head}{'' if self.never_written else ' (NaN/Inf must match the reference)'}; {count}"
        return (f"{head}; {count} (|got - expected| > atol {_fmt(self.atol)} + rtol {_fmt(self.rtol)} * |expected|), "
                f"max abs err {_fmt(self.max_abs_err)}, max rel err {_fmt(self.max_rel_err)}")

    def where(self) -> dict[str, Any]:
        """The mismatch as data for :class:`~kernelpro.runner.records.CheckFailure`."""
        return {
            "rule": self.rule, "index": list(self.index), "expected": self.expected, "got": self.got,
            "never_written": self.never_written, "bad": self.bad, "total": self.total,
            "max_abs_err": self.max_abs_err, "max_rel_err": self.max_rel_err, "rel_l2_err": self.rel_l2_err,
            "atol": self.atol, "rtol": self.rtol,
        }


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float | np.floating):
        return f"{float(value):.7g}"
    return str(value)


def compare_output(got: np.ndarray, expected: np.ndarray, dtype: str, tolerance: Tolerance) -> Mismatch | None:
    """None when ``got`` matches ``expected`` (both in the storage dtype of task dtype ``dtype``)."""
    if got.shape != expected.shape:
        raise ValueError(f"shapes differ: got {got.shape}, expected {expected.shape}")
    if dtype in FLOAT_DTYPES:
        return _compare_floats(got, expected, dtype, tolerance)
    return _compare_exact(got, expected, dtype)


class _ScaledNorm:
    """Overflow-safe running L2 norm (LAPACK's scale / sum-of-squares update)."""

    def __init__(self) -> None:
        self.scale, self.ssq = 0.0, 1.0

    def add(self, magnitudes: np.ndarray) -> None:
        if magnitudes.size == 0:
            return
        peak = float(magnitudes.max())
        if peak == 0.0:
            return
        chunk = float(np.sum((magnitudes / peak) ** 2))
        if peak > self.scale:
            self.ssq = self.ssq * (self.scale / peak) ** 2 + chunk
            self.scale = peak
        else:
            self.ssq += chunk * (peak / self.scale) ** 2

    @property
    def value(self) -> float:
        return self.scale * math.sqrt(self.ssq)


def _compare_floats(got: np.ndarray, expected: np.ndarray, dtype: str, tol: Tolerance) -> Mismatch | None:
    g_all, e_all = got.reshape(-1), expected.reshape(-1)
    total = g_all.size
    bad = 0
    first: int | None = None
    first_rule = ""
    max_abs, max_rel, worst = 0.0, 0.0, 0
    diff_norm, exp_norm = _ScaledNorm(), _ScaledNorm()
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for start in range(0, total, CHUNK):
            g = as_float64(g_all[start:start + CHUNK], dtype)
            e = as_float64(e_all[start:start + CHUNK], dtype)
            special = (np.isnan(e) != np.isnan(g)) | (np.isposinf(e) != np.isposinf(g)) | \
                      (np.isneginf(e) != np.isneginf(g))
            finite = np.isfinite(e) & np.isfinite(g)
            diff = np.where(finite, np.abs(g - e), 0.0)
            magnitude = np.where(finite, np.abs(e), 0.0)
            wrong = special | (finite & (diff > tol.atol + tol.rtol * magnitude))
            count = int(np.count_nonzero(wrong))
            if count and first is None:
                k = int(np.flatnonzero(wrong)[0])
                first, first_rule = start + k, "nan-inf" if special[k] else "elementwise"
            bad += count
            if diff.size and float(diff.max()) > max_abs:
                k = int(np.argmax(diff))
                max_abs, worst = float(diff[k]), start + k
            rel = np.where(magnitude > 0, diff / np.where(magnitude > 0, magnitude, 1.0), np.where(diff > 0, np.inf, 0))
            if rel.size:
                max_rel = max(max_rel, float(rel.max()))
            diff_norm.add(diff)
            exp_norm.add(magnitude)
    if first is not None:
        return _mismatch(first_rule, bad, first, got, expected, dtype, tol, max_abs, max_rel, None, None)
    if exp_norm.value > 0:
        rel_l2 = diff_norm.value / exp_norm.value
        bound = max(tol.rtol, GLOBAL_FLOOR_ULPS * ULP[dtype])
        if rel_l2 > bound:
            return _mismatch("relative-l2", 0, worst, got, expected, dtype, tol, max_abs, max_rel, rel_l2, bound)
    return None


def _mismatch(rule: str, bad: int, flat: int, got: np.ndarray, expected: np.ndarray, dtype: str, tol: Tolerance,
              max_abs: float, max_rel: float, rel_l2: float | None, bound: float | None) -> Mismatch:
    index = tuple(int(i) for i in np.unravel_index(flat, got.shape))
    g = got.reshape(-1)[flat:flat + 1]
    e = expected.reshape(-1)[flat:flat + 1]
    return Mismatch(
        rule=rule, bad=bad, total=got.size, index=index,
        expected=float(as_float64(e, dtype)[0]), got=float(as_float64(g, dtype)[0]),
        never_written=bool(is_poison(g, dtype)[0]),
        max_abs_err=max_abs, max_rel_err=max_rel, rel_l2_err=rel_l2, bound=bound, atol=tol.atol, rtol=tol.rtol,
    )


def _compare_exact(got: np.ndarray, expected: np.ndarray, dtype: str) -> Mismatch | None:
    differs = (unsigned_view(np.ascontiguousarray(got)) != unsigned_view(np.ascontiguousarray(expected))).reshape(-1)
    bad = int(np.count_nonzero(differs))
    if not bad:
        return None
    flat = int(np.flatnonzero(differs)[0])
    g_all, e_all = got.reshape(-1), expected.reshape(-1)
    errors = np.abs(g_all[differs].astype(np.float64) - e_all[differs].astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = errors / np.abs(e_all[differs].astype(np.float64))
    return Mismatch(
        rule="exact", bad=bad, total=got.size, index=tuple(int(i) for i in np.unravel_index(flat, got.shape)),
        expected=_py(e_all[flat]), got=_py(g_all[flat]), never_written=bool(is_poison(g_all[flat:flat + 1], dtype)[0]),
        max_abs_err=float(errors.max()), max_rel_err=float(np.nanmax(rel)) if rel.size else 0.0,
        rel_l2_err=None, bound=None, atol=0.0, rtol=0.0,
    )


def _py(value: np.generic) -> int | float | bool:
    return value.item()
