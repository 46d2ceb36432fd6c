"""``kernelpro propose``, ``kernelpro skills list/export/learn`` and ``optimize --skills`` from the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from test_export import make_run

from kernelpro.skill_library import load_skills, parse_skill
from kernelpro.toolchain import find_tool

ROOT = Path(__file__).resolve().parents[1]
needs_nvcc = pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")


def kernelpro(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kernelpro", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=900)


@needs_nvcc
def test_propose_lists_structural_rewrites_with_diffs_evidence_and_skills() -> None:
    done = kernelpro("propose", str(ROOT / "tasks" / "softmax.cu"), "-n", "4")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "memory-bound by [cost] (0.62 FLOP/B)" in out
    assert "[structural] offline:warp_per_row" in out and "intended: no block barrier" in out and "→ yes" in out
    assert "+/* kernelpro launch" in out and '+grid = ["ceil_div(ROWS, 8)"]' in out  # the diff carries the launch
    assert f"skills for an LLM proposer: {len(load_skills())} descriptions" in out and "row-reductions" in out


@needs_nvcc
def test_propose_json_on_a_candidate_file(tmp_path: Path) -> None:
    task = ROOT / "tasks" / "rmsnorm.cu"
    candidate = tmp_path / "cand.cu"
    candidate.write_text(task.read_text().replace("float sq = 0.0f;", "float sq = 0.0f;  // mine"))
    done = kernelpro("propose", str(task), "--candidate", str(candidate), "-n", "3", "--json")
    assert done.returncode == 0, done.stderr
    [report] = json.loads(done.stdout)
    structural = [p for p in report["proposals"] if p["structural"]]
    assert structural and all(p["shows_intended"] for p in structural)
    assert all("// mine" in p["diff"] or p["diff"] == "" or "mine" not in p["change"] for p in report["proposals"])
    launch = next(p["launch"] for p in report["proposals"] if p["origin"] == "offline:warp_per_row")
    assert tomllib.loads(launch)["launch"][0]["block"] == ["32"]


def test_propose_bad_input_is_one_line(tmp_path: Path) -> None:
    done = kernelpro("propose", str(tmp_path / "missing.cu"))
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "missing.cu" in done.stderr
    done = kernelpro("propose", str(ROOT / "tasks" / "gelu.cu"), "--candidate", str(tmp_path / "nope.cu"))
    assert done.returncode == 1 and "nope.cu: cannot read candidate" in done.stderr


def test_skills_list_and_export(tmp_path: Path) -> None:
    done = kernelpro("skills", "list")
    assert done.returncode == 0 and "vectorized-elementwise (built-in" in done.stdout
    assert "[rewrites: vectorize_loads]" in done.stdout
    target = tmp_path / ".claude" / "skills"
    done = kernelpro("skills", "export", "--to", str(target))
    assert done.returncode == 0, done.stderr
    exported = sorted(p.parent.name for p in target.glob("*/SKILL.md"))
    assert exported == sorted(s.name for s in load_skills())
    assert (target / "tiled-transpose" / "assets" / "transpose_tiled.cu").is_file()
    assert all(parse_skill(p) for p in target.glob("*/SKILL.md"))  # what other agents read is valid


def test_learn_turns_a_verified_run_into_a_loadable_draft_skill(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path / "work")
    target = tmp_path / "user-skills"
    done = kernelpro("skills", "learn", str(run_dir), "--to", str(target))
    assert done.returncode == 0, done.stderr
    [path] = target.glob("*/SKILL.md")
    skill = parse_skill(path, user=True)
    assert skill.name.startswith("learned-scale-") and "x faster on " in skill.description
    assert "## Recipe (the verified winning path, in order)" in skill.body and "x over its parent" in skill.body
    assert (path.parent / "assets" / "scale_winner.cu").read_text() == (run_dir / "best.cu").read_text()
    listed = kernelpro("skills", "list", "--skills", str(target))
    assert f"{skill.name} (user" in listed.stdout
    (run_dir / "report.md").write_text("no final check here\n")  # an unverified winner is refused
    refused = kernelpro("skills", "learn", str(run_dir), "--to", str(tmp_path / "other"))
    assert refused.returncode == 1 and "final check" in refused.stderr and refused.stderr.count("\n") == 1


def test_optimize_refuses_a_malformed_user_skill_before_running(tmp_path: Path) -> None:
    bad = tmp_path / "skills" / "broken"
    bad.mkdir(parents=True)
    (bad / "SKILL.md").write_text("---\nname: broken\n---\n")
    done = kernelpro("optimize", str(ROOT / "tasks" / "vector_add.cu"), "--skills", str(tmp_path / "skills"),
                     "--proposer", "offline", "--out", str(tmp_path / "run"))
    assert done.returncode == 1 and "SKILL.md:2: skill has no description" in done.stderr
    assert not (tmp_path / "run").exists()
