"""A small Gaussian-process surrogate for the knob tuner (:mod:`kernelpro.search.knobtune`), numpy only.

Inputs are knob configurations encoded in [0, 1] per feature (see :meth:`KnobSpace.columns`: the log of
an integer knob's value, a value's position in the knob's declared list otherwise); the target
is log time, standardized. The kernel is Matern 5/2 with one length scale per knob
(ARD), so the model learns which knobs matter from the data instead of being told. Length scales are
chosen by profile marginal likelihood among a seeded set of candidates (the signal variance has a closed
form given them); a small fixed nugget absorbs timing noise. Fitting is O(n^3) in observations (n is at
most a few hundred evaluations) and prediction O(n m) in candidates, a few milliseconds per ask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NUGGET = 1e-3  # relative noise variance: repeated timings of one kernel differ by ~1-3%
SCALE_CANDIDATES = 48  # length-scale vectors tried per hyperparameter fit
SCALE_RANGE = (0.05, 3.0)  # per-knob length scales, in units of the knob's whole range
SCALE_PRIOR = (math.log(0.5), 1.0)  # log-normal prior on each length scale (mean of the log, its sd)
REFINE_ROUNDS = 2  # coordinate passes (halve or double one length scale) after the random candidates


def matern52(a: np.ndarray, b: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The Matern 5/2 correlation between the rows of ``a`` and ``b`` (unit variance)."""
    a, b = a / scales, b / scales
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    r = np.sqrt(np.maximum(squared, 0.0)) * math.sqrt(5.0)
    return (1.0 + r + r * r / 3.0) * np.exp(-r)


@dataclass(frozen=True)
class GPFit:
    """A fitted model: what :func:`predict` needs."""

    x: np.ndarray
    alpha: np.ndarray  # K^-1 y
    chol_inv: np.ndarray  # inverse of the lower Cholesky factor of K
    scales: np.ndarray
    variance: float
    mean: float
    std: float


def profile_log_likelihood(x: np.ndarray, y: np.ndarray, scales: np.ndarray) -> float:
    """Log marginal likelihood of standardized ``y`` with the signal variance at its maximum-likelihood value."""
    n = len(y)
    k = matern52(x, x, scales) + NUGGET * np.eye(n)
    try:
        chol = np.linalg.cholesky(k)
    except np.linalg.LinAlgError:
        return -math.inf
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
    variance = max(float(y @ alpha) / n, 1e-12)
    prior = -0.5 * float((((np.log(scales) - SCALE_PRIOR[0]) / SCALE_PRIOR[1]) ** 2).sum())
    return -0.5 * n * math.log(variance) - float(np.log(np.diag(chol)).sum()) + prior


def choose_scales(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Length scales by maximum a posteriori (profile likelihood and a log-normal prior): the best of
    isotropic and seeded random ARD candidates, then refined one knob at a time (halved or doubled)."""
    d = x.shape[1]
    lo, hi = (math.log(v) for v in SCALE_RANGE)
    candidates = [np.full(d, s) for s in (0.15, 0.3, 0.6, 1.2)]
    candidates += list(np.exp(rng.uniform(lo, hi, size=(SCALE_CANDIDATES, d))))
    scores = [profile_log_likelihood(x, y, s) for s in candidates]
    best, score = candidates[int(np.argmax(scores))], max(scores)
    for _ in range(REFINE_ROUNDS):
        for i in range(d):
            for factor in (0.5, 2.0):
                trial = best.copy()
                trial[i] = min(max(trial[i] * factor, SCALE_RANGE[0]), SCALE_RANGE[1])
                trial_score = profile_log_likelihood(x, y, trial)
                if trial_score > score:
                    best, score = trial, trial_score
    return best


def fit(x: np.ndarray, values: np.ndarray, scales: np.ndarray) -> GPFit:
    """The model of ``values`` (raw targets, standardized here) at ``x`` with the given length scales."""
    mean, std = float(values.mean()), float(values.std()) or 1.0
    y = (values - mean) / std
    k = matern52(x, x, scales) + NUGGET * np.eye(len(y))
    chol = np.linalg.cholesky(k)
    chol_inv = np.linalg.inv(chol)
    alpha = chol_inv.T @ (chol_inv @ y)
    variance = max(float(y @ alpha) / len(y), 1e-12)
    return GPFit(x, alpha, chol_inv, scales, variance, mean, std)


def predict(model: GPFit, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and standard deviation at the rows of ``x``, in the targets' units."""
    k = matern52(x, model.x, model.scales)
    mu = k @ model.alpha
    v = model.chol_inv @ k.T
    var = np.maximum(1.0 - (v * v).sum(0), 1e-12) * model.variance
    return model.mean + model.std * mu, model.std * np.sqrt(var)


def expected_improvement(mu: np.ndarray, sigma: np.ndarray, best: float) -> np.ndarray:
    """Expected improvement below ``best`` (minimization) of a normal posterior."""
    z = (best - mu) / sigma
    cdf = 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return (best - mu) * cdf + sigma * pdf


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function, to 1.5e-7 (Abramowitz and Stegun 7.1.26): numpy has none and scipy is not a
    dependency."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))
