"""Put a stand-in command-line program (a Python script) first on PATH for one test."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest


def install_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, script: str) -> Path:
    """Write ``script`` (formatted with ``python=sys.executable`` for its shebang) as ``name`` in a folder put
    first on PATH; return the script's path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(script.format(python=sys.executable))
    path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return path
