"""The knob tuner (search/knobtune.py), its Gaussian process (search/gp.py) and its place in the MCTS
(search/knob_expansion.py): constraints, failures, determinism, tell order, and exact resume."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from kernelpro.search import Budget, MCTSConfig, gp, read_journal, resume, start
from kernelpro.search.journal import JOURNAL_NAME
from kernelpro.search.knob_expansion import ORIGIN
from kernelpro.search.knobtune import KnobSpace, KnobTuner
from kernelpro.search.records import NodeRecord
from kernelpro.search.synthetic import (
    DEFAULT_SPACE,
    SyntheticEvaluator,
    SyntheticProposer,
    baseline_variant,
    knob_space,
    model,
)

NAMES = [n for n, _ in DEFAULT_SPACE]


def constrained_space() -> KnobSpace:
    """The synthetic space without BLOCK * UNROLL > 2048 (a stand-in for a threads-per-block constraint)."""
    configs = [dict(zip(NAMES, c, strict=True)) for c in itertools.product(*(v for _, v in DEFAULT_SPACE))]
    return KnobSpace.from_configs(dict(DEFAULT_SPACE),
                                  [c for c in configs if int(c["BLOCK"]) * int(c["UNROLL"]) <= 2048])


def synthetic_time(space: KnobSpace, config: tuple[str, ...]) -> float | None:
    return model(space.as_dict(config)).time_us


def tune(space: KnobSpace, seed: int, evaluations: int, k: int = 1) -> list[tuple[str, ...]]:
    tuner, asked = KnobTuner(space, seed=seed), []
    while len(asked) < evaluations and not tuner.exhausted:
        batch = tuner.ask(k)
        for config in batch:
            tuner.tell(config, synthetic_time(space, config))
        asked += batch
    return asked


def test_asks_only_valid_configurations_and_never_twice() -> None:
    space = constrained_space()
    asked = tune(space, seed=3, evaluations=10_000, k=3)
    assert set(asked) == set(space.candidates), "the whole space, and nothing outside it"
    assert len(asked) == len(set(asked)) == len(space.candidates)
    with pytest.raises(ValueError, match="not in the knob space"):
        KnobTuner(space).tell(("1024", "4", "1"), 1.0)


def test_failures_teach_the_model_without_stopping_it() -> None:
    space = knob_space()
    tuner = KnobTuner(space, seed=0)
    for config in tuner.ask(6):
        tuner.tell(config, None)  # the whole start failed
    more = tuner.ask(4)
    assert len(more) == 4 and not set(more) & {c for c, _ in tuner.observations}
    for config in more:
        tuner.tell(config, synthetic_time(space, config))
    tuner.tell(tuner.ask(1)[0], float("nan"))  # an unusable time is a failure, not a crash
    assert tuner.observations[-1][1] is None
    assert len(tuner.ask(2)) == 2  # the model now fits passing and failed observations


def test_finds_the_synthetic_optimum_well_before_exhausting_the_space() -> None:
    space = knob_space()  # 72 configurations, two failure kinds, a slow trap next to the optimum
    optimum = space.config(SyntheticEvaluator().optimum())
    found = [tune(space, seed, 40).index(optimum) + 1 if optimum in tune(space, seed, 40) else None
             for seed in range(5)]
    assert all(n is not None for n in found), found
    assert sorted(found)[2] <= 25, f"median evaluations to the optimum {found} (random sampling needs ~36)"


def test_a_seed_gives_one_sequence_and_seeds_differ() -> None:
    space = constrained_space()
    assert tune(space, 1, 25) == tune(space, 1, 25)
    assert tune(space, 1, 25) != tune(space, 2, 25)


def test_results_may_be_told_in_any_order() -> None:
    space = knob_space()
    forward, backward = KnobTuner(space, seed=4), KnobTuner(space, seed=4)
    for tuner, order in ((forward, 1), (backward, -1)):
        for _ in range(3):
            batch = tuner.ask(4)
            for config in batch[::order]:
                tuner.tell(config, synthetic_time(space, config))
    assert forward.ask(3) == backward.ask(3)


def test_pending_configurations_are_not_asked_again() -> None:
    space = knob_space()
    tuner = KnobTuner(space, seed=0)
    for config in tuner.ask(8):
        tuner.tell(config, synthetic_time(space, config))
    first = tuner.ask(2)  # in flight, not told
    second = tuner.ask(2)
    assert not set(first) & set(second)


def test_a_rebuilt_tuner_asks_what_the_original_would() -> None:
    space = constrained_space()
    original = KnobTuner(space, seed=5)
    for _ in range(6):
        for config in original.ask(2):
            original.tell(config, synthetic_time(space, config))
    pending = original.ask(2)
    rebuilt = KnobTuner(space, seed=5)
    for config, time_us in original.observations:
        rebuilt.mark_asked(config)
        rebuilt.tell(config, time_us)
    for config in pending:
        rebuilt.mark_asked(config)
    assert rebuilt.ask(3) == original.ask(3)


def test_alignment_features_only_for_integer_knobs_of_more_than_two_values() -> None:
    space = KnobSpace.from_configs({"B": (16, 32, 48, 64), "F": ("a", "b", "c"), "P": (0, 1), "C": (7,)},
                                   [{"B": b, "F": f, "P": p, "C": 7} for b in (16, 32, 48, 64)
                                    for f in "abc" for p in (0, 1)])
    assert [name for name, _ in space.columns()] == ["B", "B", "F", "P"]
    x = space.encode(space.candidates)
    assert x.shape == (24, 4) and x.min() == 0.0 and x.max() == 1.0


def test_integer_knobs_are_placed_by_ratio_and_other_knobs_by_position() -> None:
    space = KnobSpace.from_configs({"B": (16, 32, 64, 128, 256), "T": (1, 2, 4), "P": (0, 1), "F": ("x", "y", "z")},
                                   [{"B": b, "T": t, "P": p, "F": f} for b in (16, 32, 64, 128, 256)
                                    for t in (1, 2, 4) for p in (0, 1) for f in "xyz"])
    block, tile = space.columns()[0][1], space.columns()[2][1]
    assert block["32"] - block["16"] == pytest.approx(block["256"] - block["128"])  # doubling is one step
    assert block["16"] == 0.0 and block["256"] == 1.0 and tile["2"] == pytest.approx(0.5)
    flag, label = dict(space.columns())["P"], dict(space.columns())["F"]
    assert flag == {"0": 0.0, "1": 1.0} and label == {"x": 0.0, "y": 0.5, "z": 1.0}
    uneven = KnobSpace.from_configs({"B": (16, 32, 48, 64)}, [{"B": b} for b in (16, 32, 48, 64)])
    assert uneven.columns()[0][1]["32"] == pytest.approx(0.5)  # log 32 is halfway between log 16 and log 64


def test_gp_interpolates_and_is_uncertain_away_from_data() -> None:
    x = np.linspace(0, 1, 8)[:, None]
    y = np.sin(6 * x[:, 0])
    model = gp.fit(x, y, np.array([0.3]))
    mu, sigma = gp.predict(model, np.vstack([x, [[3.0]]]))
    assert np.allclose(mu[:-1], y, atol=0.05) and sigma[-1] > 5 * sigma[:-1].max()
    ei = gp.expected_improvement(np.array([0.0, 1.0]), np.array([1.0, 1.0]), 0.5)
    assert ei[0] > ei[1] > 0
    assert math.isclose(float(gp._erf(np.array([0.5]))[0]), math.erf(0.5), abs_tol=1e-6)


# -- inside the MCTS ------------------------------------------------------------------------------------


def keys_in_order(run_dir: Path) -> list[str]:
    return [r.variant.key for r in read_journal(run_dir / JOURNAL_NAME) if isinstance(r, NodeRecord)]


class Crash(Exception):
    """Stands in for the process dying."""


class CrashingEvaluator(SyntheticEvaluator):
    def __init__(self, after: int) -> None:
        super().__init__(noise=0.02, seed=7)
        self.after = after

    def evaluate(self, variant):  # type: ignore[no-untyped-def]
        if self.calls == self.after:
            raise Crash
        return super().evaluate(variant)


@pytest.mark.parametrize("proposer", [None, SyntheticProposer()], ids=["knobs-only", "with-proposer"])
@pytest.mark.parametrize("crash_at", [5, 17])
def test_resume_continues_the_knob_search_exactly(tmp_path: Path, proposer, crash_at: int) -> None:
    config, budget, space = MCTSConfig(seed=2), Budget(max_evaluations=30), knob_space()
    reference = start(tmp_path / "ref", baseline_variant(), SyntheticEvaluator(noise=0.02, seed=7), proposer,
                      config=config, budget=budget, knob_space=space)
    with pytest.raises(Crash):
        start(tmp_path / "cut", baseline_variant(), CrashingEvaluator(crash_at), proposer, config=config,
              budget=budget, knob_space=space)
    assert len(keys_in_order(tmp_path / "cut")) == crash_at
    resumed = resume(tmp_path / "cut", SyntheticEvaluator(noise=0.02, seed=7), proposer, knob_space=space)
    assert keys_in_order(tmp_path / "cut") == keys_in_order(tmp_path / "ref")
    assert json.dumps(resumed.tree.to_node_link(), sort_keys=True) == \
        json.dumps(reference.tree.to_node_link(), sort_keys=True)


def test_knob_tuning_and_the_source_proposer_share_the_budget() -> None:
    from kernelpro.search import MCTS

    search = MCTS(baseline_variant(), SyntheticEvaluator(), SyntheticProposer(), config=MCTSConfig(seed=0),
                  budget=Budget(max_evaluations=40), knob_space=knob_space())
    result = search.run()
    origins = [n.variant.origin for n in result.tree]
    tuned = origins.count(ORIGIN)
    assert 0.3 * len(origins) <= tuned <= 0.5 * len(origins) + 2, origins
    assert any(o.startswith("synthetic") for o in origins)


def test_a_knob_only_search_reaches_the_optimum() -> None:
    from kernelpro.search import MCTS

    evaluator = SyntheticEvaluator()
    result = MCTS(baseline_variant(), evaluator, None, config=MCTSConfig(seed=0), budget=Budget(max_evaluations=40),
                  knob_space=knob_space()).run()
    assert result.best.variant.knob_values == {**evaluator.optimum()}
    with pytest.raises(ValueError, match="proposer, a knob space"):
        MCTS(baseline_variant(), evaluator, None)
