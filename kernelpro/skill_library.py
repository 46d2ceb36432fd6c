"""Skills: expert rewrites written once as Agent Skills, read by the LLM proposer and by ``kernelpro propose``.

A skill is a folder with a ``SKILL.md``: YAML front matter with ``name`` and ``description`` (the Agent
Skills standard), then Markdown instructions; optional ``assets/`` (a compilable reference kernel),
``references/`` and ``scripts/``. kernelpro reads three more keys from the standard's ``metadata`` map,
all optional, each a space-separated string:

- ``signals``: diagnosis signals that select the skill: tool names (``scalar_loads``), action kinds
  (``vectorize_loads``, ``use_tensor_cores``) and static finding codes (``sass.narrow-accesses``);
- ``patterns``: regular expressions over the kernel source (``__syncthreads\\(\\)[^;]*;\\s*for``);
- ``rewrites``: machine-applicable rewrites (names in :data:`kernelpro.rewrites.registry.REWRITES`).

**Selection** (:func:`select`): a skill scores 2 per matching signal and 1 per matching pattern; the top
:data:`MAX_SELECTED` with a positive score are chosen, as long as their bodies fit :data:`BODY_TOKEN_BUDGET`
together (a body that would overflow it is skipped). Built-in skills ship in ``kernelpro/skills``; user
skills (``optimize --skills DIR``, ``kernelpro skills learn``) are added after them and win on a name clash.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from kernelpro.errors import KernelproError

MAX_SELECTED = 2  # full skill bodies per request
BODY_TOKEN_BUDGET = 2400  # tokens for the selected bodies together (~4 characters per token)
DESCRIPTION_CHARS = 400  # a description is one paragraph: what the skill does and when it applies
_NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_FRONT = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n", re.DOTALL)


def builtin_dir() -> Path:
    """The built-in skills: ``kernelpro/skills`` in an installed package, ``skills/`` in a checkout."""
    package = Path(__file__).resolve().parent
    installed = package / "skills"
    return installed if installed.is_dir() else package.parent / "skills"


def approx_tokens(text: str) -> int:
    """A conservative token estimate (about 4 characters per token for English and code)."""
    return (len(text) + 3) // 4


@dataclass(frozen=True)
class Skill:
    """One parsed skill: its front matter, its Markdown body and where it came from."""

    name: str
    description: str
    body: str
    path: Path  # the SKILL.md
    signals: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    rewrites: tuple[str, ...] = ()
    user: bool = False

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def tokens(self) -> int:
        return approx_tokens(self.body)

    def score(self, signals: Iterable[str], source: str) -> int:
        """2 per diagnosis signal this skill names, 1 per source pattern that matches."""
        wanted = set(signals)
        return 2 * sum(s in wanted for s in self.signals) + sum(bool(re.search(p, source)) for p in self.patterns)


def _fail(path: Path, message: str, fix: str, line: int | None = None) -> KernelproError:
    return KernelproError(message, file=path, line=line, fix=fix)


def parse_skill(path: Path, *, user: bool = False) -> Skill:
    """Parse one ``SKILL.md``; a one-line :class:`KernelproError` naming the file and line when it is malformed."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise _fail(path, f"cannot read skill: {exc.strerror}", "check the path") from None
    front = _FRONT.match(text)
    if front is None:
        raise _fail(path, "no YAML front matter", "start the file with '---', name: and description:, then '---'", 1)
    try:
        meta = yaml.safe_load(front.group(1)) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2
        raise _fail(path, f"front matter is not valid YAML ({getattr(exc, 'problem', exc)})",
                    "quote values that contain ':' or '#'", line) from None
    if not isinstance(meta, dict):
        raise _fail(path, "front matter is not a mapping", "write 'name: ...' and 'description: ...' lines", 2)
    name, description = meta.get("name"), meta.get("description")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise _fail(path, f"skill name {name!r} is missing or not lower-case-with-hyphens",
                    f"name: {path.parent.name}", 2)
    if name != path.parent.name:
        raise _fail(path, f"skill name {name!r} differs from its folder {path.parent.name!r}",
                    "rename the folder or the skill", 2)
    if not isinstance(description, str) or not description.strip():
        raise _fail(path, "skill has no description", "add 'description: what it does and when to use it'", 2)
    if len(description) > DESCRIPTION_CHARS:
        raise _fail(path, f"description is {len(description)} characters", f"keep it under {DESCRIPTION_CHARS}", 2)
    extra = meta.get("metadata") or {}
    if not isinstance(extra, dict):
        raise _fail(path, "metadata is not a mapping", "write 'metadata:' then indented 'signals: ...'", 2)
    fields = {key: tuple(str(extra.get(key, "")).split()) for key in ("signals", "patterns", "rewrites")}
    for pattern in fields["patterns"]:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _fail(path, f"pattern {pattern!r} is not a regular expression ({exc})", "escape it", 2) from None
    if fields["rewrites"]:
        from kernelpro.rewrites.registry import REWRITES

        known = sorted(r.name for r in REWRITES)
        unknown = [r for r in fields["rewrites"] if r not in known]
        if unknown:
            raise _fail(path, f"unknown rewrite {unknown[0]!r} in metadata.rewrites", f"use one of: {', '.join(known)}",
                        2)
    return Skill(name, " ".join(description.split()), text[front.end() :].strip() + "\n", path, **fields, user=user)


def load_skills(user_dirs: Iterable[Path] = (), *, builtin: Path | None = None) -> tuple[Skill, ...]:
    """The built-in skills, then those in ``user_dirs`` (a user skill replaces a built-in one of its name)."""
    found: dict[str, Skill] = {}
    for folder, user in [(builtin or builtin_dir(), False), *((Path(d), True) for d in user_dirs)]:
        if not folder.is_dir():
            raise KernelproError("skills folder not found", file=folder, fix="pass a folder of <name>/SKILL.md")
        for path in sorted(folder.glob("*/SKILL.md")):
            skill = parse_skill(path, user=user)
            found[skill.name] = skill
    return tuple(found.values())


def select(skills: Iterable[Skill], signals: Iterable[str], source: str, *, limit: int = MAX_SELECTED,
           budget: int = BODY_TOKEN_BUDGET) -> tuple[Skill, ...]:
    """The skills whose bodies go into a request: best score first, at most ``limit``, within ``budget`` tokens."""
    signals = tuple(signals)
    ranked = sorted(((s.score(signals, source), s) for s in skills), key=lambda pair: (-pair[0], pair[1].name))
    chosen, used = [], 0
    for score, skill in ranked:
        if score <= 0 or len(chosen) >= limit:
            break
        if used + skill.tokens <= budget:
            chosen.append(skill)
            used += skill.tokens
    return tuple(chosen)


def catalog(skills: Iterable[Skill]) -> str:
    """The always-present part: one line per skill, ``name: description``."""
    return "\n".join(f"- {s.name}: {s.description}" for s in skills)


def signals_of(details: dict | None, action_kinds: Iterable[str] = ()) -> tuple[str, ...]:
    """Diagnosis signals from a journaled diagnosis (``Diagnosis.to_dict()`` of :mod:`kernelpro.diagnosis`)."""
    found = list(action_kinds)
    for item in (details or {}).get("prescriptions", ()):
        found.append(str(item.get("tool", "")))
        found += [str(a.get("kind", "")) for a in item.get("actions", ())]
    found += [str(name) for name in (details or {}).get("fired", ())]
    found += [str(code) for code in (details or {}).get("static_findings", ())]
    return tuple(dict.fromkeys(s for s in found if s))


def export_skills(skills: Iterable[Skill], target: Path) -> list[Path]:
    """Copy each skill's folder into ``target`` (created if needed); an existing folder of that name is replaced."""
    written = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for skill in skills:
            destination = target / skill.name
            if destination.exists():
                shutil.rmtree(destination)
            shutil.copytree(skill.folder, destination, ignore=shutil.ignore_patterns("__pycache__"))
            written.append(destination)
    except OSError as exc:
        raise KernelproError(f"cannot write skills: {exc.strerror}", file=exc.filename or target,
                             fix="choose a writable folder") from None
    return written
