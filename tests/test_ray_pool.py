"""The Ray backend on logical GPUs: ``ray.init(num_cpus=2, num_gpus=2)``, no GPU needed (skipped without Ray)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kernelpro.errors import KernelproError
from kernelpro.runner import ray_pool as rp
from kernelpro.search import Budget, MCTSConfig, start
from kernelpro.search.synthetic import baseline_variant, knob_space

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("ray")
    env = {"PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "KERNELPRO_CACHE_DIR": str(base / "cache"), "KERNELPRO_TEST_MARKERS": str(base)}
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env})
    yield base
    ray.shutdown()


def make_pool(base: Path) -> rp.RayPool:
    from ray_slots import EchoSlot, fake_compile

    return rp.RayPool(EchoSlot, precompile=fake_compile, cache_dir=str(base / "cache"))


def test_one_actor_per_gpu_each_seeing_its_own_device_and_compiles_crossing_as_bytes(cluster: Path) -> None:
    pool = make_pool(cluster)
    try:
        assert pool.slots == 2 and pool.capacity == 4
        variants = [baseline_variant().with_knobs({"BLOCK": b}, change=b, origin="t") for b in ("64", "128", "256")]
        for v in variants:
            pool.submit(v)
        done = []
        while len(done) < 3:
            done += pool.poll()
        assert all(f.evaluation.ok for f in done)
        by_slot = {f.slot: f.evaluation.summary for f in done}
        assert {s["actor_devices"] for s in by_slot.values()} == {"0", "1"}  # distinct per actor
        assert all(s["worker_devices"] == s["actor_devices"] for s in by_slot.values())  # the worker inherits it
        for f in done:  # the cubin bytes the compile task made arrived in the actor's cache
            assert f.evaluation.summary["cubin"] == f.variant.key
            assert f.evaluation.summary["compiled_by"] != f"compiled on pid {f.evaluation.summary['actor_pid']}"
    finally:
        pool.close()


def test_an_actor_killed_mid_evaluation_is_a_crash_of_that_candidate_never_retried(cluster: Path) -> None:
    pool = make_pool(cluster)
    try:
        hang = baseline_variant().with_knobs({"BLOCK": "512"}, change="hang", origin="t")
        pool.submit(hang)
        deadline = time.monotonic() + 120
        while not list(cluster.glob("running-*")):
            assert time.monotonic() < deadline, "the candidate never started"
            time.sleep(0.2)
        ray.kill(pool.actors[0])
        (lost,) = pool.poll()
        assert lost.variant == hang and not lost.evaluation.ok
        assert lost.evaluation.failure.startswith("wall: crash: the GPU worker (Ray actor on slot 0) was lost")
        # The slot has a new actor; the search goes on with the next candidate, and the lost one is not rerun.
        after = baseline_variant().with_knobs({"BLOCK": "1024"}, change="next", origin="t")
        pool.submit(after)
        (done,) = pool.poll()
        assert done.variant == after and done.evaluation.ok
        assert len(list(cluster.glob("running-*"))) == 1
    finally:
        pool.close()


def test_a_search_on_the_ray_pool(cluster: Path, tmp_path: Path) -> None:
    pool = make_pool(cluster)
    try:
        result = start(tmp_path, baseline_variant(), pool, None, config=MCTSConfig(seed=0),
                       budget=Budget(max_evaluations=12), knob_space=knob_space())
    finally:
        pool.close()
    assert result.evaluations == 12 and set(result.gpu_busy_s) == {0, 1}
    assert {n.evaluation.summary["actor_devices"] for n in result.tree} == {"0", "1"}


def test_mixed_gpu_models_and_a_missing_ray_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    nodes = [{"Alive": True, "Resources": {"GPU": 8.0, "accelerator_type:H100": 1.0}},
             {"Alive": True, "Resources": {"GPU": 8.0, "accelerator_type:A100": 1.0}}]
    with pytest.raises(KernelproError, match=r"--ray: mixed GPU models \(A100, H100\)"):
        rp.check_cluster_models(rp.cluster_models(nodes))
    rp.check_cluster_models(rp.cluster_models(nodes[:1]))
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    with pytest.raises(KernelproError, match="--ray needs Ray") as caught:
        rp.require_ray()
    assert "pip install 'kernelpro[ray]'" in caught.value.fix
