"""Sample-efficient knob tuning, ask/tell-shaped: a space-filling start, then Bayesian optimization.

A kernel's compile-time knobs span a finite space cut down by constraints (threads per block, shared
memory), so the tuner scores the actual valid configurations (:class:`KnobSpace`) rather than a
continuous relaxation: nothing it proposes is invalid, and a model never has to learn the constraints.

**Start.** The first ``initial`` configurations (one per varying knob plus one, at least four) are a
randomized maximin design: each is the candidate farthest from everything asked so far, among a seeded
random subset, so the start covers every knob's range without always taking the corners.

**Then** a Gaussian process on log time (:mod:`kernelpro.search.gp`, one length scale per feature; an
integer knob is placed by the log of its value, so doubling a block size is one step wherever it starts) and
expected improvement, times the probability of passing, over the configurations not asked yet (in a
large space: a seeded sample of them, plus every one within a knob or two of the best observed, where
good configurations cluster). A failed configuration teaches a second model, of the probability of
passing, which scales the expected improvement: failures make their neighbourhood unlikely without
distorting the time model. It is never proposed again and never stops the tuner. Every third model-based
pick is a refinement step: the best by the same score among the configurations one knob away from the
best one observed (a global model alone tends to leave a near-optimum for distant uncertainty).
Several configurations asked at once (``ask(k)``), or asked but not told yet, are placed by the kriging
believer: each is added to the model at its predicted time before the next is chosen, so a batch spreads
out. Results may be told in any order.

**Determinism.** Everything the tuner proposes is a function of its seed and the configurations asked and
told, in ask order: length scales are refitted on the first ``m`` observations at fixed checkpoints ``m``
(seeded by ``m``), not "whenever ask is called", so a tuner rebuilt by telling a journal's results
proposes exactly what the uninterrupted one would have.

Why not Optuna's TPE or CMA-ES: TPE samples each knob independently and CMA-ES a continuous relaxation,
so in a constrained discrete space both propose configurations outside the space that must be rejected
or faked; neither scores the enumerable candidate set. The model here is a hundred lines of numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from kernelpro.search import gp

Config = tuple[str, ...]  # knob values as text, in KnobSpace.names order

MIN_INITIAL = 4
MAXIMIN_POOL = 256  # candidates considered per space-filling pick
LOCAL_EVERY = 3  # every third model-based ask stays next to the best configuration (a local refinement step)
SCORED = 1000  # configurations the acquisition scores per ask: a seeded sample plus the incumbents' neighbours
FEASIBILITY_CHECKED = 64  # best candidates by expected improvement that the pass/fail model weighs
NEIGHBOURS = ((1, 2), (4, 1))  # (how many of the best observations, knobs they may differ in)
REFIT_GROWTH = 1.25  # length scales are refitted when the observations grow by this factor


@dataclass(frozen=True)
class KnobSpace:
    """The valid knob configurations of a kernel: each knob's values (as text, in declared order) and every
    configuration that satisfies the constraints."""

    names: tuple[str, ...]
    values: Mapping[str, tuple[str, ...]]
    candidates: tuple[Config, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", {n: tuple(str(v) for v in self.values[n]) for n in self.names})
        object.__setattr__(self, "candidates", tuple(tuple(str(v) for v in c) for c in self.candidates))
        if not self.candidates:
            raise ValueError("a knob space needs at least one valid configuration")

    @classmethod
    def from_configs(cls, values: Mapping[str, Sequence[object]], configs: Iterable[Mapping[str, object]]) -> KnobSpace:
        """The space of ``configs`` (each a knob → value mapping) over knobs with the declared ``values``."""
        names = tuple(values)
        return cls(names, {n: tuple(str(v) for v in values[n]) for n in names},
                   tuple(tuple(str(c[n]) for n in names) for c in configs))

    @property
    def varying(self) -> tuple[str, ...]:
        """The knobs with more than one value (the dimensions the model sees)."""
        return tuple(n for n in self.names if len(self.values[n]) > 1)

    def encode(self, configs: Sequence[Config]) -> np.ndarray:
        """Each configuration as features in [0, 1] (see :meth:`columns`)."""
        columns = self.columns()
        if not columns:
            return np.zeros((len(configs), 1))
        at = {n: i for i, n in enumerate(self.names)}
        return np.array([[table[c[at[name]]] for name, table in columns] for c in configs], dtype=float)

    def columns(self) -> list[tuple[str, dict[str, float]]]:
        """The model's features, as (knob, value text → feature) pairs, each in [0, 1]. A knob of positive
        integers with more than two values is placed by the log of its value, since GPU performance follows
        ratios of block and tile sizes rather than differences (16 → 32 threads changes more than 224 → 240),
        and has a second feature, its alignment (how many times 2 divides the value), since performance
        also follows alignment to warps, memory transactions and banks (96 threads is not between 64 and 128
        in any way the hardware cares about). Every other varying knob is placed by its value's position in
        the declared list."""
        columns = []
        for name in self.varying:
            values = self.values[name]
            numbers = [_integer(v) for v in values]
            ratio = len(values) > 2 and all(n is not None and n > 0 for n in numbers)
            logs = [math.log(n) for n in numbers] if ratio else []  # type: ignore[arg-type]
            if logs and max(logs) > min(logs):
                lo, hi = min(logs), max(logs)
                columns.append((name, {v: (g - lo) / (hi - lo) for v, g in zip(values, logs, strict=True)}))
            else:
                columns.append((name, {v: j / (len(values) - 1) for j, v in enumerate(values)}))
            if ratio:
                twos = [_twos(n) for n in numbers]  # type: ignore[arg-type]
                lo, hi = min(twos), max(twos)
                if hi > lo:
                    columns.append((name, {v: (t - lo) / (hi - lo) for v, t in zip(values, twos, strict=True)}))
        return columns

    @cached_property
    def valid(self) -> frozenset[Config]:
        return frozenset(self.candidates)

    def config(self, knobs: Mapping[str, str]) -> Config:
        return tuple(str(knobs[n]) for n in self.names)

    def as_dict(self, config: Config) -> dict[str, str]:
        return dict(zip(self.names, config, strict=True))


class KnobTuner:
    """Ask for configurations to evaluate, tell their results (see the module docstring).

    ``tell(config, None)`` records a failure. A configuration told without being asked (the baseline, or
    one another proposer evaluated) is an observation like any other.
    """

    def __init__(self, space: KnobSpace, *, seed: int = 0, initial: int | None = None) -> None:
        self.space = space
        self.seed = seed
        self.initial = initial or max(MIN_INITIAL, len(space.varying) + 1)
        self._order: list[Config] = []  # asked (or told unasked), in order
        self._results: dict[Config, float | None] = {}  # told: time, or None when it failed
        self._features = space.encode(space.candidates)
        position = [{v: j for j, v in enumerate(space.values[n])} for n in space.names]
        self._positions = np.array([[position[i][v] for i, v in enumerate(c)] for c in space.candidates], dtype=int)
        self._row = {c: i for i, c in enumerate(space.candidates)}
        self._scales: dict[int, np.ndarray] = {}  # checkpoint m -> length scales fitted on m observations

    # -- the protocol ----------------------------------------------------------------------------------

    def tell(self, config: Config, time_us: float | None) -> None:
        """The result of evaluating ``config``: its time, or None when it failed (any stage)."""
        config = tuple(config)
        if config not in self.space.valid:
            raise ValueError(f"configuration {config} is not in the knob space")
        if time_us is not None and not (math.isfinite(time_us) and time_us > 0):
            time_us = None  # a time that can't be a time is a failure of the measurement
        if config not in self._results and config not in self._order:
            self._order.append(config)
        self._results[config] = time_us

    def ask(self, k: int = 1) -> list[Config]:
        """Up to ``k`` configurations not asked or told before (fewer when the space runs out)."""
        chosen: list[Config] = []
        for _ in range(k):
            config = self._next(chosen)
            if config is None:
                break
            chosen.append(config)
        self._order += chosen
        return chosen

    def mark_asked(self, config: Config) -> None:
        """Record that ``config`` was asked (replaying a journal that holds the asks, not the tuner)."""
        if tuple(config) not in self._order:
            self._order.append(tuple(config))

    @property
    def exhausted(self) -> bool:
        return len(self._order) >= len(self.space.candidates)

    @property
    def observations(self) -> list[tuple[Config, float | None]]:
        """What was told, in ask order."""
        return [(c, self._results[c]) for c in self._order if c in self._results]

    @property
    def best(self) -> tuple[Config, float] | None:
        passed = [(c, t) for c, t in self.observations if t is not None]
        return min(passed, key=lambda p: p[1]) if passed else None

    # -- choosing --------------------------------------------------------------------------------------

    def _next(self, chosen: list[Config]) -> Config | None:
        taken = set(self._order) | set(chosen)
        mask = np.ones(len(self.space.candidates), dtype=bool)
        mask[[self._row[c] for c in taken]] = False
        free = np.flatnonzero(mask).tolist()
        if not free:
            return None
        rng = np.random.default_rng([self.seed, len(taken)])
        observed = self.observations
        if len(taken) < self.initial or not any(t is not None for _, t in observed):
            return self.space.candidates[self._maximin(free, taken, rng)]
        if (len(taken) - self.initial) % LOCAL_EVERY == LOCAL_EVERY - 1:
            local = self._near_best(free, observed)
            free = local or free
        return self.space.candidates[self._expected_improvement(free, observed, chosen, rng)]

    def _near_best(self, free: list[int], observed: list[tuple[Config, float | None]]) -> list[int]:
        """The free configurations one knob away from the best observed one."""
        best = min((t, c) for c, t in observed if t is not None)[1]
        rows = np.array(free)
        return rows[self._knobs_apart(rows, best) <= 1].tolist()

    def _knobs_apart(self, rows: np.ndarray, config: Config) -> np.ndarray:
        """How many knobs each candidate row sets differently from ``config``."""
        return (self._positions[rows] != self._positions[self._row[config]]).sum(1)

    def _maximin(self, free: list[int], taken: set[Config], rng: np.random.Generator) -> int:
        pool = rng.permutation(free)[:MAXIMIN_POOL]  # ties go to the first: a seeded choice
        if not taken:
            return int(pool[0])
        seen = self._features[[self._row[c] for c in taken]]
        pts = self._features[pool]
        distance = np.sqrt(((pts[:, None, :] - seen[None, :, :]) ** 2).sum(-1)).min(1)
        return int(pool[int(np.argmax(distance))])

    def _expected_improvement(self, free: list[int], observed: list[tuple[Config, float | None]],
                              chosen: list[Config], rng: np.random.Generator) -> int:
        passed = [(c, math.log(t)) for c, t in observed if t is not None]
        x = self._features[[self._row[c] for c, _ in passed]]
        y = np.array([v for _, v in passed])
        scales = self._fitted_scales(x, y)
        model = gp.fit(x, y, scales)
        pending = [c for c in self._order if c not in self._results] + chosen
        if pending:  # kriging believer: the pending ones at their predicted times
            px = self._features[[self._row[c] for c in pending]]
            mu, _ = gp.predict(model, px)
            model = gp.fit(np.vstack([x, px]), np.concatenate([y, mu]), scales)
        free = self._scored(free, observed, rng)
        mu, sigma = gp.predict(model, self._features[free])
        ei = gp.expected_improvement(mu, sigma, float(y.min()))
        top = np.argsort(-ei, kind="stable")[:FEASIBILITY_CHECKED]  # the pass/fail model reorders these
        score = ei[top] * self._feasible(observed, scales, self._features[[free[i] for i in top]])
        return free[int(top[int(np.argmax(score))])]

    def _feasible(self, observed: list[tuple[Config, float | None]], scales: np.ndarray,
                  candidates: np.ndarray) -> np.ndarray | float:
        """The probability each candidate passes: a GP on the pass/fail outcomes (1 everywhere while nothing
        failed). Failures live in this model, not in the time model, so a failure next to the optimum makes
        that neighbour unlikely without making the optimum look slow."""
        failed = np.array([t is None for _, t in observed], dtype=float)
        if not failed.any():
            return 1.0
        x = self._features[[self._row[c] for c, _ in observed]]
        mu, _ = gp.predict(gp.fit(x, failed, scales), candidates)
        return np.clip(1.0 - mu, 0.0, 1.0)

    def _scored(self, free: list[int], observed: list[tuple[Config, float | None]],
                rng: np.random.Generator) -> list[int]:
        """The configurations to score: all of a small space; else a seeded sample of ``SCORED`` plus every
        free configuration within a knob or two of the best ones observed (where the optimum usually is)."""
        if len(free) <= SCORED:
            return free
        ranked = sorted((t, i) for i, (_, t) in enumerate(observed) if t is not None)
        rows = np.array(free)
        near = np.zeros(len(free), dtype=bool)
        start = 0
        for count, knobs in NEIGHBOURS:
            for _, i in ranked[start:start + count]:
                near |= self._knobs_apart(rows, observed[i][0]) <= knobs
            start += count
        sample = rng.choice(len(free), SCORED, replace=False)
        near[sample] = True
        return rows[near].tolist()

    def _fitted_scales(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Length scales fitted on the first ``m`` observations, ``m`` the last checkpoint reached."""
        m = self.initial
        while math.ceil(m * REFIT_GROWTH) <= len(y):
            m = math.ceil(m * REFIT_GROWTH)
        m = min(m, len(y))
        if m not in self._scales:
            ym = y[:m]
            ys = (ym - ym.mean()) / (ym.std() or 1.0)
            self._scales[m] = gp.choose_scales(x[:m], ys, np.random.default_rng([self.seed, m, 1]))
        return self._scales[m]


def _integer(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _twos(n: int) -> int:
    """How many times 2 divides ``n`` (n > 0)."""
    return (n & -n).bit_length() - 1
