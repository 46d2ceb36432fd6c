"""Slot evaluators and a compile stand-in for the Ray tests; imported by Ray's worker processes (so a module)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kernelpro.search import Evaluation, Variant

MARKER_DIR = "KERNELPRO_TEST_MARKERS"


def fake_compile(variant: Variant) -> dict[str, bytes]:
    """A compile-cache entry per variant, as bytes (what a CPU compile task ships to the GPU's actor)."""
    return {f"k{variant.key[:16]}/result.json": f"compiled on pid {os.getpid()}".encode(),
            f"k{variant.key[:16]}/kernel.cubin": variant.key.encode()}


class EchoSlot:
    """Runs a self-test job in the actor's supervised worker; ``change == "hang"`` blocks in the actor."""

    def __init__(self, supervisor) -> None:
        self.supervisor = supervisor
        self.cache = Path(os.environ["KERNELPRO_CACHE_DIR"])

    def evaluate(self, variant: Variant) -> Evaluation:
        if variant.change == "hang":
            (Path(os.environ[MARKER_DIR]) / f"running-{os.getpid()}").write_text(variant.key)
            time.sleep(120)
        entry = self.cache / f"k{variant.key[:16]}"
        job = self.supervisor.run("selftest.echo", {}, timeout=30.0)
        return Evaluation.passed(1.0, summary={
            "worker_devices": job.value["devices"], "actor_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "cubin": (entry / "kernel.cubin").read_text() if entry.is_dir() else None,
            "compiled_by": (entry / "result.json").read_text() if entry.is_dir() else None,
            "actor_pid": os.getpid()})
