"""The distribution installs `tools/` and `search/` as `kernelpro.tools` / `kernelpro.search`
only, the console script exists, and the tree is `ruff check` clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (wheel,) = out.glob("kernelpro-*.whl")
    return zipfile.ZipFile(wheel).namelist()


def test_tools_and_search_install_under_kernelpro(wheel_names: list[str]) -> None:
    assert "kernelpro/tools/__init__.py" in wheel_names
    assert "kernelpro/search/__init__.py" in wheel_names
    top_level = {name.split("/", 1)[0] for name in wheel_names if "/" in name and ".dist-info" not in name}
    assert top_level == {"kernelpro"}, f"unexpected top-level packages: {top_level}"


def test_builtin_skills_install_as_package_data(wheel_names: list[str]) -> None:
    skills = {Path(n).parent.name for n in wheel_names if n.startswith("kernelpro/skills/") and n.endswith("/SKILL.md")}
    assert skills == {p.parent.name for p in (ROOT / "skills").glob("*/SKILL.md")}
    assert any(n.startswith("kernelpro/skills/") and "/assets/" in n for n in wheel_names)
    assert "kernelpro/rewrites/__init__.py" in wheel_names


def test_console_script_is_declared(wheel_names: list[str]) -> None:
    assert any(name.endswith(".dist-info/entry_points.txt") for name in wheel_names)


def test_imports_under_kernelpro() -> None:
    import kernelpro.search
    import kernelpro.tools

    assert Path(kernelpro.tools.__file__).parent.name == "tools"
    assert Path(kernelpro.search.__file__).parent.name == "search"


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed (pip install -e '.[dev]')")
    result = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
