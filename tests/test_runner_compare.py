"""The tolerance rule: NaN/Inf matching, elementwise atol + rtol, relative L2, exact integers."""

from __future__ import annotations

import numpy as np
import pytest

from kernelpro.runner import compare
from kernelpro.runner.buffers import poison
from kernelpro.runner.compare import compare_output
from kernelpro.runner.inputs import float32_to_bfloat16_bits
from kernelpro.task import DEFAULT_TOLERANCES, Tolerance

F32 = DEFAULT_TOLERANCES["float32"]  # atol 1e-5, rtol 1e-4


def test_identical_outputs_match() -> None:
    x = np.random.default_rng(0).normal(size=(7, 9)).astype(np.float32)
    assert compare_output(x.copy(), x, "float32", F32) is None


def test_nan_and_inf_must_match_where_the_reference_has_them() -> None:
    expected = np.array([1.0, np.nan, np.inf, -np.inf], np.float32)
    assert compare_output(expected.copy(), expected, "float32", F32) is None
    got = expected.copy()
    got[2] = -np.inf
    mismatch = compare_output(got, expected, "float32", F32)
    assert mismatch.rule == "nan-inf" and mismatch.index == (2,)
    got = expected.copy()
    got[0] = np.nan
    assert compare_output(got, expected, "float32", F32).index == (0,)
    got = expected.copy()
    got[1] = 0.0
    assert compare_output(got, expected, "float32", F32).rule == "nan-inf"


def test_first_bad_index_is_multi_dimensional() -> None:
    expected = np.zeros((4, 5), np.float32)
    got = expected.copy()
    got[3, 0] = 1.0
    got[1, 2] = 2.0
    mismatch = compare_output(got, expected, "float32", F32)
    assert mismatch.index == (1, 2)
    assert (mismatch.expected, mismatch.got) == (0.0, 2.0)
    assert mismatch.bad == 2 and mismatch.total == 20
    assert mismatch.max_abs_err == 2.0
    assert "y[1, 2]: expected 0, got 2" in mismatch.describe("y")


def test_relative_and_absolute_terms() -> None:
    expected = np.array([1000.0, 0.0], np.float32)
    within = np.array([1000.05, 9e-6], np.float32)  # 0.05 <= 1e-5 + 1e-4 * 1000; 9e-6 <= atol
    assert compare_output(within, expected, "float32", F32) is None
    beyond = np.array([1000.2, 0.0], np.float32)
    mismatch = compare_output(beyond, expected, "float32", F32)
    assert mismatch.rule == "elementwise" and mismatch.index == (0,)
    assert mismatch.max_rel_err == pytest.approx(2e-4, rel=0.01)


def test_all_zeros_against_a_tiny_reference_fails() -> None:
    expected = (np.random.default_rng(1).normal(size=4096) * 1e-30).astype(np.float32)
    mismatch = compare_output(np.zeros_like(expected), expected, "float32", F32)
    assert mismatch is not None, "zeros passed by atol alone"
    assert mismatch.rule == "relative-l2"
    assert mismatch.rel_l2_err == pytest.approx(1.0)
    assert "relative L2 error" in mismatch.describe("y")


def test_a_tiny_reference_computed_right_passes() -> None:
    x = (np.random.default_rng(2).normal(size=(64, 4096)) * 1e-30).astype(np.float32)
    assert compare_output(x.sum(axis=1, dtype=np.float32), x.astype(np.float64).sum(axis=1).astype(np.float32),
                          "float32", F32) is None


def test_a_reordered_summation_passes() -> None:
    x = np.random.default_rng(3).normal(size=(64, 4096)).astype(np.float32)
    sequential = np.cumsum(x, axis=1, dtype=np.float32)[:, -1]  # left to right, like a one-thread loop
    pairwise = x.sum(axis=1, dtype=np.float32)  # numpy's pairwise summation: another order
    assert not np.array_equal(sequential, pairwise), "the orders should round differently"
    assert compare_output(pairwise, sequential, "float32", Tolerance(atol=1e-3, rtol=1e-4)) is None


def test_never_written_elements_are_named() -> None:
    expected = np.ones(8, np.float32)
    got = expected.copy()
    poison(got[5:], "float32")
    mismatch = compare_output(got, expected, "float32", F32)
    assert mismatch.index == (5,) and mismatch.never_written
    assert "never written" in mismatch.describe("y")


def test_integers_must_match_exactly() -> None:
    expected = np.arange(12, dtype=np.int32).reshape(3, 4)
    assert compare_output(expected.copy(), expected, "int32", Tolerance(1.0, 1.0)) is None
    got = expected.copy()
    got[2, 1] = 100
    mismatch = compare_output(got, expected, "int32", Tolerance(0.0, 0.0))
    assert mismatch.rule == "exact" and mismatch.index == (2, 1)
    assert (mismatch.expected, mismatch.got) == (9, 100)
    assert compare_output(np.array([True, False]), np.array([True, True]), "bool", Tolerance(0, 0)).index == (1,)


def test_bfloat16_is_compared_as_values() -> None:
    values = np.random.default_rng(4).normal(size=100).astype(np.float32)
    expected = float32_to_bfloat16_bits(values)
    nudged = float32_to_bfloat16_bits(values * np.float32(1.003))  # within rtol 2e-2
    assert compare_output(nudged, expected, "bfloat16", DEFAULT_TOLERANCES["bfloat16"]) is None
    wrong = float32_to_bfloat16_bits(values * 2)
    assert compare_output(wrong, expected, "bfloat16", DEFAULT_TOLERANCES["bfloat16"]) is not None


def test_chunked_processing_finds_the_same_first_index(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = np.random.default_rng(5).normal(size=(10, 10)).astype(np.float32)
    got = expected.copy()
    got[7, 3] += 1.0
    got[9, 9] += 5.0
    whole = compare_output(got, expected, "float32", F32)
    monkeypatch.setattr(compare, "CHUNK", 7)
    chunked = compare_output(got, expected, "float32", F32)
    assert chunked == whole
    assert chunked.index == (7, 3) and chunked.max_abs_err == pytest.approx(5.0, rel=1e-6)


def test_the_l2_norm_neither_overflows_nor_underflows() -> None:
    for scale in (1e300, 1e-300, 1.0):
        norm = compare._ScaledNorm()
        norm.add(np.full(1000, scale))
        norm.add(np.full(3000, scale / 2))
        assert norm.value == pytest.approx(scale * np.sqrt(1000 + 3000 / 4))
