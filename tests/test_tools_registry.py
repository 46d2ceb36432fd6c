"""The tool registry and the action vocabulary: names, metrics, classes, serialisation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kernelpro import actions
from kernelpro.ncu import load_raw_csv
from kernelpro.profile import stage2_metrics
from kernelpro.roofline import BOUNDS, STAGE1_METRICS
from kernelpro.tools import all_tools, describe, get_tool

FIXTURE = Path(__file__).parent / "fixtures" / "ncu-h100" / "planted_raw.csv"


def test_registry_has_the_tools_the_issue_asks_for() -> None:
    names = [t.name for t in all_tools()]
    assert len(names) == len(set(names)) >= 16
    assert {"occupancy_limiter", "occupancy_gap", "scalar_loads", "fp64_promotion", "tensor_cores", "local_memory",
            "uncoalesced", "bank_conflicts", "divergence", "tail_effect", "small_grid", "block_size_multiple",
            "long_scoreboard", "mio_lsu_throttle", "barrier_stalls", "unfused_fp32", "atomic_contention",
            "dram_bandwidth", "l2_hit_rate", "launch_overhead"} <= set(names)
    with pytest.raises(KeyError, match="known: small_grid"):
        get_tool("nope")
    rows = json.loads(json.dumps(describe()))
    assert [row["name"] for row in rows] == names and rows[0]["applies_to"] == ["compute", "latency", "memory"]


def test_every_declared_metric_is_a_real_ncu_name() -> None:
    # Names are checked against the header of the real H100 capture, so stage-2 metric lists are collectable.
    header = set(load_raw_csv(FIXTURE)[0].metrics)
    for tool in all_tools():
        assert tool.metrics, tool.name
        assert [m for m in tool.metrics if m not in header] == [], tool.name
        # Section-defined names (derived__*, "LTS.TriageCompute.*") are not collectable with --metrics.
        assert all(re.fullmatch(r"[a-z0-9]+__[a-z0-9_.]+", m) and not m.startswith("derived__")
                   for m in tool.metrics), tool.name


def test_tools_are_well_formed() -> None:
    names = {t.name for t in all_tools()}
    for tool in all_tools():
        assert tool.applies_to and tool.applies_to <= set(BOUNDS), tool.name
        assert set(tool.defers_to) <= names - {tool.name}, tool.name
        assert tool.title and tool.trigger.__module__ == tool.analyze.__module__ == f"kernelpro.tools.{tool.name}"


def test_stage2_is_the_union_per_class() -> None:
    for bound in BOUNDS:
        wanted = stage2_metrics(bound)
        assert len(wanted) == len(set(wanted)) and not set(wanted) & set(STAGE1_METRICS)
        applicable = {m for t in all_tools() if bound in t.applies_to for m in t.metrics}
        assert set(wanted) == applicable - set(STAGE1_METRICS)
    assert "smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio" in stage2_metrics("latency")


def test_actions_round_trip_through_json() -> None:
    made = [
        actions.set_knob("BLOCK", 256), actions.block_size(100, 128, "BLOCK"), actions.launch_bounds(256, 2),
        actions.maxrregcount(64), actions.vectorize_loads(), actions.pad_shared("t", 33, 32), actions.unroll(4),
        actions.add_restrict(), actions.nvcc_flag("-Xptxas -dlcm=cg"), actions.grid_stride_loop(),
        actions.increase_grid(1056), actions.use_tensor_cores("float16"),
    ]
    assert {a.kind for a in made} == set(actions.KINDS)
    for action in made:
        again = actions.Action.from_dict(json.loads(json.dumps(action.to_dict())))
        assert again == action and action.text
    assert actions.pad_shared("t", 33, 32).text == "pad shared array t to [32][33]"
    assert not actions.use_tensor_cores().applicable_offline and actions.unroll(None).params["factor"] is None


def test_actions_reject_unknown_kinds_and_params() -> None:
    with pytest.raises(ValueError, match="unknown action kind"):
        actions.Action("rewrite_everything")
    with pytest.raises(ValueError, match="takes"):
        actions.Action("unroll", {"loop": 2})
    with pytest.raises(ValueError):
        actions.vectorize_loads(96)


def test_every_tool_says_when_it_fires() -> None:
    for row in describe():
        assert row["fires_when"] and row["title"], row["name"]
