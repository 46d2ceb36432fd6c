"""Skills: every built-in SKILL.md parses (Agent Skills front matter), every asset compiles, selection
follows the diagnosis within the token budget, and a malformed skill is a one-line error with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernelpro.compiler import Compiler, CompileRequest
from kernelpro.errors import KernelproError
from kernelpro.rewrites.registry import REWRITES
from kernelpro.skill_library import (
    BODY_TOKEN_BUDGET,
    MAX_SELECTED,
    builtin_dir,
    catalog,
    load_skills,
    parse_skill,
    select,
)
from kernelpro.toolchain import find_tool

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {"row-reductions", "warp-block-reductions", "vectorized-elementwise", "tiled-transpose",
            "histogram-privatization", "prefix-scan", "topk-selection", "tiled-gemm", "tensor-core-gemm",
            "decode-attention", "kernel-fusion"}
ASSETS = sorted(p.relative_to(ROOT / "skills") for p in (ROOT / "skills").glob("*/assets/*.cu"))


def test_builtin_skills_parse_and_cover_the_patterns() -> None:
    skills = load_skills()
    assert builtin_dir() == ROOT / "skills"
    assert {s.name for s in skills} >= REQUIRED
    known = {r.name for r in REWRITES}
    for skill in skills:
        assert skill.description and len(skill.body) > 500, skill.name
        for section in ("## When it applies", "## Recipe", "## Pitfalls"):
            assert section in skill.body, (skill.name, section)
        assert set(skill.rewrites) <= known, skill.name
        assert list(skill.folder.glob("assets/*.cu")), f"{skill.name} has no reference kernel"
        assert skill.tokens <= BODY_TOKEN_BUDGET // MAX_SELECTED, (skill.name, skill.tokens)  # two always fit
    names = {s.name for s in skills}
    for rewrite in REWRITES:  # every machine rewrite is explained by a skill that names it
        assert rewrite.skill in names and rewrite.name in next(s for s in skills if s.name == rewrite.skill).rewrites


@pytest.mark.skipif(find_tool("nvcc", required=False) is None, reason="nvcc not installed")
@pytest.mark.parametrize("asset", ASSETS, ids=str)
def test_every_skill_asset_compiles(tmp_path_factory: pytest.TempPathFactory, asset: Path) -> None:
    compiler = Compiler(cache_dir=tmp_path_factory.mktemp("cache"))
    result = compiler.compile(CompileRequest((ROOT / "skills" / asset).read_text(), "sm_90", (), ()))
    assert result.ok, result.diagnostics
    assert result.resources and not any(r.spills for r in result.resources.values())


def test_selection_follows_signals_and_source() -> None:
    skills = load_skills()
    bf16 = "__nv_bfloat16* x; if (i < n) { y[i] = x[i]; }"
    chosen = select(skills, ["scalar_loads", "vectorize_loads"], bf16)
    assert chosen[0].name == "vectorized-elementwise"
    softmax = (ROOT / "tasks" / "softmax.cu").read_text()
    assert "row-reductions" in {s.name for s in select(skills, ["barrier_stalls"], softmax)}
    assert select(skills, [], "int main() {}") == ()
    assert sum(s.tokens for s in select(skills, ["barrier_stalls", "scalar_loads"], softmax)) <= BODY_TOKEN_BUDGET
    assert all(f"- {s.name}: " in catalog(skills) for s in skills)


def test_user_skills_add_to_and_override_builtins(tmp_path: Path) -> None:
    folder = tmp_path / "row-reductions"
    folder.mkdir()
    (folder / "SKILL.md").write_text("---\nname: row-reductions\ndescription: my own\n---\n# Mine\n")
    skills = {s.name: s for s in load_skills([tmp_path])}
    assert skills["row-reductions"].description == "my own" and skills["row-reductions"].user
    assert set(skills) >= REQUIRED


@pytest.mark.parametrize("text,line,words", [
    ("# no front matter\n", 1, "no YAML front matter"),
    ("---\nname: bad\ndescription: a: b: c\n---\nbody\n", 3, "not valid YAML"),
    ("---\nname: Bad_Name\ndescription: x\n---\nbody\n", 2, "lower-case-with-hyphens"),
    ("---\nname: bad\n---\nbody\n", 2, "no description"),
    ("---\nname: bad\ndescription: x\nmetadata:\n  rewrites: warp_shufle_reduction\n---\nbody\n", 2,
     "unknown rewrite 'warp_shufle_reduction'"),
])
def test_malformed_skills_are_one_line_errors(tmp_path: Path, text: str, line: int, words: str) -> None:
    path = tmp_path / "bad" / "SKILL.md"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(KernelproError) as info:
        parse_skill(path)
    assert info.value.line == line and words in info.value.message and info.value.fix
    assert "\n" not in str(info.value)
