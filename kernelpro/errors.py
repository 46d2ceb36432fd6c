"""Errors that a user can act on.

Every failure kernelpro reports to a person is a :class:`KernelproError`: one line that names
where the problem is (file and line when there is one), what is wrong, and how to fix it. The CLI
prints ``str(error)`` and exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations

from pathlib import Path


class KernelproError(Exception):
    """A problem the user can fix, with its location and the fix."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.fix = fix
        super().__init__(self.__str__())

    @property
    def location(self) -> str:
        """``file:line`` (or just ``file``), empty when the error has no place."""
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


class TaskError(KernelproError):
    """A task file that cannot be loaded or is inconsistent."""


class ToolchainError(KernelproError):
    """A CUDA tool (nvcc, ptxas, cuobjdump, nvdisasm, ncu) is missing or unusable."""


class CompileError(KernelproError):
    """nvcc rejected a candidate; ``diagnostics`` holds the structured messages."""

    def __init__(self, message: str, diagnostics: list | None = None, **kwargs) -> None:
        self.diagnostics = list(diagnostics or [])
        super().__init__(message, **kwargs)
