"""Compile CUDA source to a cubin with nvcc: resources, structured diagnostics, a cache, parallel builds.

One compile runs ``nvcc -cubin -arch=<arch> -Xptxas -v <extra flags> -D... -I... <flags>`` in a
fresh temporary folder that holds the source under the basename of ``source_name``, so every
message nvcc prints can be mapped back to the name the user knows. The intermediate PTX is kept
(``-keep``) to read ``__launch_bounds__`` and to map ptxas errors in inline assembly back to
source lines through its ``.loc`` directives.

Results are content-addressed: the key hashes everything that decides nvcc's output, including
the nvcc version. Each key is one folder holding ``kernel.cubin`` and ``result.json``, written
under a temporary name in the cache folder and renamed into place, so concurrent writers of one
key are safe and a reader sees a whole entry or none. A corrupt, partial or stale entry reads as a
miss and is replaced. Failed compiles are cached too (nvcc is deterministic).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from kernelpro import toolchain
from kernelpro.cuda_source import KernelSignature, find_kernels
from kernelpro.errors import CompileError, KernelproError, ToolchainError
from kernelpro.ptxas import KernelResources, demangle_names, parse_ptx_launch_bounds, parse_ptxas_verbose

CACHE_FORMAT = 1  # bump when result.json changes meaning; old entries then read as misses
DEFAULT_ARCH = "sm_90"
# The name search candidates compile under: the cache key includes it, so every component that compiles a
# candidate (the offline proposer's check, the evaluator, the diagnoser) shares one cache entry per variant.
CANDIDATE_NAME = "candidate.cu"
_MACRO_NAME = re.compile(r"[A-Za-z_]\w*")


def default_cache_dir() -> Path:
    """``$KERNELPRO_CACHE_DIR`` or ``~/.cache/kernelpro/compile``."""
    env = os.environ.get("KERNELPRO_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kernelpro" / "compile"


def default_arch() -> str:
    """``sm_XY`` of the first visible GPU (from ``nvidia-smi``), else ``sm_90``."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            proc = subprocess.run(
                [smi, "--query-gpu=compute_cap", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            if proc.returncode == 0:
                major, minor = proc.stdout.split()[0].split(".")
                return f"sm_{int(major)}{int(minor)}"
        except (OSError, subprocess.SubprocessError, IndexError, ValueError):
            pass
    return DEFAULT_ARCH


@dataclass(frozen=True)
class CompileRequest:
    """One source to compile, with its knob values (``defines``) and extra nvcc flags.

    ``defines`` may also be given as a mapping; it is stored as sorted ``(name, str(value))``
    pairs. The source is compiled from a temporary folder, so headers that sit next to the
    original file are found only through ``include_dirs``.
    """

    source: str
    arch: str
    defines: tuple[tuple[str, str], ...] = ()
    flags: tuple[str, ...] = ()  # an entry may hold several words: "-Xptxas -dlcm=cg"
    source_name: str = "kernel.cu"  # the name diagnostics show
    include_dirs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        pairs = self.defines.items() if isinstance(self.defines, Mapping) else self.defines
        defines = tuple(sorted((str(name), str(value)) for name, value in pairs))
        names = [name for name, _ in defines]
        for name in names:
            if not _MACRO_NAME.fullmatch(name):
                raise CompileError(f"invalid macro name {name!r} in defines", fix="use a C identifier")
        if len(set(names)) != len(names):
            raise CompileError(f"a macro is defined twice in {defines}", fix="give each knob one value")
        object.__setattr__(self, "defines", defines)
        object.__setattr__(self, "flags", tuple(self.flags))
        object.__setattr__(self, "include_dirs", tuple(str(d) for d in self.include_dirs))


@dataclass(frozen=True)
class Diagnostic:
    """One message from nvcc, the host preprocessor or ptxas, located in the user's terms."""

    file: str
    line: int | None
    column: int | None
    severity: str  # "error" | "warning" | "remark"
    message: str
    source_line: str | None = None  # the line the message points at, when known

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class CompileResult:
    """What one compile produced. ``cubin`` lives in the cache and is None when the compile failed."""

    ok: bool
    cubin: Path | None
    resources: Mapping[str, KernelResources]  # by kernel symbol
    diagnostics: tuple[Diagnostic, ...]
    log: str  # nvcc's whole output, temporary paths replaced by source_name
    cache_hit: bool
    key: str
    seconds: float
    command: tuple[str, ...]

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")


class Compiler:
    """nvcc with a content-addressed on-disk cache; safe to share between threads.

    ``nvcc`` defaults to the one :func:`kernelpro.toolchain.find_tool` finds, looked up on first
    use; ``extra_flags`` go into every command (and every key); ``timeout`` bounds one nvcc run.
    """

    def __init__(
        self,
        cache_dir: Path | None = None,
        nvcc: Path | None = None,
        extra_flags: Sequence[str] = ("-O3", "-lineinfo"),
        timeout: float = 300.0,
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.extra_flags = tuple(extra_flags)
        self.timeout = timeout
        self._nvcc = Path(nvcc) if nvcc is not None else None
        self._version: str | None = None
        self._lock = threading.Lock()

    def resolve_nvcc(self) -> tuple[Path, str]:
        """nvcc's path and version, found on first use; raises ToolchainError when nvcc is missing."""
        with self._lock:
            if self._nvcc is None:
                self._nvcc = toolchain.find_tool("nvcc")
            if self._version is None:
                self._version = toolchain.tool_version(str(self._nvcc))
            return self._nvcc, self._version

    def cache_key(self, req: CompileRequest) -> str:
        """sha256 over everything that decides nvcc's output for ``req``."""
        _, version = self.resolve_nvcc()
        payload = {
            "format": CACHE_FORMAT,
            "source": req.source,
            "source_name": req.source_name,  # it shows in diagnostics and __FILE__
            "arch": req.arch,
            "defines": list(req.defines),
            "flags": _split_flags(req.flags),
            "extra_flags": list(self.extra_flags),
            "include_dirs": [str(Path(d).resolve()) for d in req.include_dirs],
            "nvcc": version,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def compile(self, req: CompileRequest) -> CompileResult:
        """Compile ``req`` or fetch it from the cache; a rejected source gives ``ok=False``, no exception."""
        start = time.perf_counter()
        nvcc, _ = self.resolve_nvcc()
        key = self.cache_key(req)
        entry = self.cache_dir / key
        cached = _load_entry(entry, key)
        if cached is not None:
            return replace(cached, seconds=time.perf_counter() - start)
        return self._build(req, nvcc, key, entry, start)

    def compile_or_raise(self, req: CompileRequest) -> CompileResult:
        """Like :meth:`compile`, but a failed compile raises :class:`CompileError` naming the first error."""
        result = self.compile(req)
        if result.ok:
            return result
        errors = result.errors or result.diagnostics
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise CompileError(
            first.message + more,
            diagnostics=list(result.diagnostics),
            file=first.file,
            line=first.line,
            fix=_fix_for(first.message),
        )

    def compile_many(self, reqs: Iterable[CompileRequest], workers: int | None = None) -> list[CompileResult]:
        """Compile in parallel threads; results in request order, identical requests compiled once."""
        reqs = list(reqs)
        keys = [self.cache_key(r) for r in reqs]
        unique = dict(zip(keys, reqs, strict=True))
        if not unique:
            return []
        workers = workers or min(len(unique), os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nvcc") as pool:
            done = dict(zip(unique, pool.map(self.compile, unique.values()), strict=True))
        return [done[k] for k in keys]

    def _command(self, req: CompileRequest, nvcc: Path, local_name: str) -> list[str]:
        cmd = [str(nvcc), "-cubin", f"-arch={req.arch}", "-Xptxas", "-v", *self.extra_flags]
        cmd += [f"-D{name}={value}" for name, value in req.defines]
        cmd += [f"-I{Path(d).resolve()}" for d in req.include_dirs]
        cmd += _split_flags(req.flags)
        cmd += ["-keep", "-keep-dir", "."]  # the PTX stays in the work folder
        if req.include_dirs:  # list the headers read, to invalidate the entry when one changes
            cmd += ["-MD", "-MF", "deps.d"]
        return [*cmd, "-o", "kernel.cubin", local_name]

    def _build(self, req: CompileRequest, nvcc: Path, key: str, entry: Path, start: float) -> CompileResult:
        local_name = Path(req.source_name).name or "kernel.cu"
        if not local_name.endswith(".cu"):  # nvcc picks the language from the extension
            local_name += ".cu"
        cmd = self._command(req, nvcc, local_name)
        with tempfile.TemporaryDirectory(prefix="kernelpro-nvcc-") as tmp:
            work = Path(tmp)
            (work / local_name).write_text(req.source)
            try:
                returncode, output = _run(cmd, work, self.timeout)
            except subprocess.TimeoutExpired:  # not cached: it may pass on a less busy machine
                message = f"nvcc did not finish within {self.timeout:g} s"
                diag = Diagnostic(req.source_name, None, None, "error", message)
                return CompileResult(False, None, {}, (diag,), message, False, key, self.timeout, tuple(cmd))
            except OSError as exc:
                raise ToolchainError(f"cannot run {nvcc}: {exc}", fix="check the CUDA installation") from exc
            log = _rewrite_paths(output, work, local_name, req.source_name)
            ptx_file, cubin_file = work / (Path(local_name).stem + ".ptx"), work / "kernel.cubin"
            ptx = ptx_file.read_text(errors="replace") if ptx_file.is_file() else ""
            cubin = cubin_file.read_bytes() if returncode == 0 and cubin_file.is_file() else None
            headers = _user_headers(work / "deps.d", req.include_dirs) if cubin is not None else {}

        diagnostics = parse_nvcc_diagnostics(log, req.source_name, req.source, ptx=ptx, local_name=local_name)
        if cubin is None and not any(d.severity == "error" for d in diagnostics):
            last = next((ln.strip() for ln in reversed(log.splitlines()) if ln.strip()), "no output")
            message = f"nvcc exited with status {returncode}: {last}"
            diagnostics += (Diagnostic(req.source_name, None, None, "error", message),)
        resources = parse_ptxas_verbose(log)
        for symbol, (max_threads, min_blocks) in parse_ptx_launch_bounds(ptx).items():
            if symbol in resources:
                resources[symbol] = replace(resources[symbol], max_threads=max_threads, min_blocks=min_blocks)
        result = CompileResult(
            ok=cubin is not None,
            cubin=entry / "kernel.cubin" if cubin is not None else None,
            resources=resources,
            diagnostics=diagnostics,
            log=log,
            cache_hit=False,
            key=key,
            seconds=time.perf_counter() - start,
            command=tuple(cmd),
        )
        try:
            _store_entry(entry, result, cubin, headers)
        except OSError as exc:
            raise KernelproError(
                f"cannot write the compile cache: {exc}",
                file=self.cache_dir,
                fix="set KERNELPRO_CACHE_DIR to a writable folder",
            ) from exc
        return result


def _run(cmd: list[str], cwd: Path, timeout: float) -> tuple[int, str]:
    """Exit status and output (stderr, then stdout) of ``cmd``; on timeout its whole process group dies.

    nvcc runs cudafe++, cicc and ptxas as children: killing only nvcc would leave them running.
    """
    env = {**os.environ, "TMPDIR": str(cwd)}  # nvcc's own temporaries land in the work folder too
    with subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return proc.returncode, stderr + stdout


def _split_flags(flags: Sequence[str]) -> list[str]:
    return [word for flag in flags for word in shlex.split(flag)]


def _sha256_file(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _user_headers(deps_file: Path, include_dirs: Sequence[str]) -> dict[str, str | None]:
    """Headers from ``include_dirs`` that the compile read (per nvcc -MD), with their hashes."""
    if not include_dirs or not deps_file.is_file():
        return {}
    roots = [Path(d).resolve() for d in include_dirs]
    words = deps_file.read_text().replace("\\\n", " ").split()
    headers = {}
    for word in words[2:]:  # skip "kernel.cubin :"
        path = (deps_file.parent / word).resolve()
        if any(path.is_relative_to(root) for root in roots):
            headers[str(path)] = _sha256_file(path)
    return headers


def _store_entry(
    entry: Path, result: CompileResult, cubin: bytes | None, headers: dict[str, str | None]
) -> None:
    """Write the entry's files into a temporary sibling folder, then rename it into place.

    The rename is atomic, so readers never see a half-written entry, and the cubin always matches
    its result.json (with -lineinfo a cubin records its compile folder, so two compiles of one key
    differ in those bytes). When another writer got there first its entry is kept; a corrupt or
    stale one is moved aside and replaced.
    """
    payload = {
        "format": CACHE_FORMAT,
        "ok": result.ok,
        "resources": {symbol: res.to_dict() for symbol, res in result.resources.items()},
        "diagnostics": [asdict(d) for d in result.diagnostics],
        "log": result.log,
        "command": list(result.command),
        "cubin_sha256": hashlib.sha256(cubin).hexdigest() if cubin is not None else None,
        "headers": headers,
    }
    tmp = entry.with_name(f".{entry.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir(parents=True)
    try:
        if cubin is not None:
            (tmp / "kernel.cubin").write_bytes(cubin)
        (tmp / "result.json").write_text(json.dumps(payload, indent=1))
        try:
            os.rename(tmp, entry)
        except OSError:  # the entry exists: keep it if it is whole and current
            if _load_entry(entry, result.key) is not None:
                return
            old = entry.with_name(f".{entry.name}.{uuid.uuid4().hex}.old")
            with contextlib.suppress(OSError):
                os.rename(entry, old)
            with contextlib.suppress(OSError):  # fails only when another writer just did the same
                os.rename(tmp, entry)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_entry(entry: Path, key: str) -> CompileResult | None:
    """The cached result in ``entry``; None when it is missing, partial, corrupt or stale."""
    try:
        data = json.loads((entry / "result.json").read_text())
        if data["format"] != CACHE_FORMAT:
            return None
        cubin = entry / "kernel.cubin" if data["ok"] else None
        if cubin is not None and _sha256_file(cubin) != data["cubin_sha256"]:
            return None
        if any(_sha256_file(Path(p)) != digest for p, digest in data["headers"].items()):
            return None
        return CompileResult(
            ok=bool(data["ok"]),
            cubin=cubin,
            resources={s: KernelResources.from_dict(r) for s, r in data["resources"].items()},
            diagnostics=tuple(Diagnostic(**d) for d in data["diagnostics"]),
            log=data["log"],
            cache_hit=True,
            key=key,
            seconds=0.0,
            command=tuple(data["command"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _rewrite_paths(log: str, work: Path, local_name: str, source_name: str) -> str:
    """Temporary-folder paths out; the temporary copy of the source becomes ``source_name``."""
    log = log.replace(f"{work}{os.sep}", "")
    local = re.compile(rf"(?<![\w./-])(?:\./)?{re.escape(local_name)}(?![\w-]|\.\w)")
    return local.sub(lambda _: source_name, log)


# --- diagnostics -------------------------------------------------------------------------------

# EDG (nvcc's front end):  file.cu(12): error: identifier "x" is undefined
_EDG = re.compile(
    r"^(?P<file>\S.*?)\((?P<line>\d+)\): (?P<sev>catastrophic error|error|warning|remark)(?: #[\w-]+)?: "
    r"(?P<msg>.*)$"
)
# The host preprocessor (gcc):  file.cu:3:10: fatal error: x.h: No such file or directory
_GCC = re.compile(
    r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:(?P<col>\d+):)? "
    r"(?P<sev>fatal error|error|warning|note): (?P<msg>.*)$"
)
# nvcc / ptxas / others, optionally with a PTX place:  ptxas ./k.ptx, line 26; error   : ...
_TOOL = re.compile(
    r"^(?P<tool>nvcc|ptxas|nvlink|fatbinary|cicc|cudafe\+\+|cc1plus|gcc|g\+\+)"
    r"(?:\s+(?P<file>\S+), line (?P<line>\d+);)?:?\s+"
    r"(?P<sev>fatal error|error|warning|fatal)\s*: (?P<msg>.*)$"
)
_CARET = re.compile(r"^\s*\^\s*$")
_GCC_SNIPPET = re.compile(r"^\s*\d*\s+\|")
_NAMED_FUNCTION = re.compile(r"[Ff]unction '([^']+)'")
_SEVERITY = {"catastrophic error": "error", "fatal error": "error", "fatal": "error", "note": "remark"}


def parse_nvcc_diagnostics(
    log: str, source_name: str, source: str, *, ptx: str = "", local_name: str | None = None
) -> tuple[Diagnostic, ...]:
    """Structured diagnostics from nvcc output whose paths already read ``source_name``.

    ``source`` gives the user's own lines (EDG echoes macro-expanded ones) and the kernels that
    ptxas messages name; ``ptx`` (with ``.loc`` line info) maps ptxas errors in inline assembly
    back to source lines; ``local_name`` is the file name nvcc saw for ``source_name``.
    """
    lines = log.splitlines()
    source_lines = source.splitlines()
    kernels = find_kernels(source)
    local_name = local_name or Path(source_name).name
    diags: list[Diagnostic] = []
    i = 0
    while i < len(lines):
        text = lines[i]
        i += 1
        if match := _EDG.match(text):
            block: list[str] = []
            while i < len(lines) and lines[i].strip() and not _EDG.match(lines[i]):
                block.append(lines[i])
                i += 1
            diags.append(_edg_diagnostic(match, block, source_name, source_lines))
        elif match := _GCC.match(text):
            while i < len(lines) and _GCC_SNIPPET.match(lines[i]):
                i += 1
            line, file = int(match["line"]), match["file"]
            column = int(match["col"]) if match["col"] else None
            own = _own_line(file, line, source_name, source_lines)
            diags.append(Diagnostic(file, line, column, _severity(match["sev"]), match["msg"].strip(), own))
        elif match := _TOOL.match(text):
            diags.append(_tool_diagnostic(match, source_name, source_lines, kernels, ptx, local_name))
    if any(d.severity == "error" and "aborted due to errors" not in d.message for d in diags):
        diags = [d for d in diags if "aborted due to errors" not in d.message]
    return tuple(diags)


def _severity(word: str) -> str:
    return _SEVERITY.get(word, word)


def _own_line(file: str, line: int | None, source_name: str, source_lines: list[str]) -> str | None:
    if file == source_name and line is not None and 0 < line <= len(source_lines):
        return source_lines[line - 1]
    return None


def _edg_diagnostic(
    match: re.Match[str], block: list[str], source_name: str, source_lines: list[str]
) -> Diagnostic:
    file, line = match["file"], int(match["line"])
    carets = [k for k, text in enumerate(block) if k > 0 and _CARET.match(text)]
    echo = block[carets[0] - 1] if carets else None
    caret = block[carets[0]].index("^") if carets else 0
    notes = [text for k, text in enumerate(block) if not carets or k not in (carets[0] - 1, carets[0])]
    message = match["msg"].strip()
    extra = [note.strip() for note in notes if note.strip()]
    if extra:
        message += " (" + "; ".join(extra) + ")"
    own = _own_line(file, line, source_name, source_lines)
    column = None
    if echo is not None:
        indent = 2 if echo.startswith("  ") else 0  # EDG indents the echoed line by two spaces
        echo, caret = echo[indent:], caret - indent
        column = _align_column(own, echo, caret) if own is not None else caret + 1
    return Diagnostic(file, line, column, _severity(match["sev"]), message, own if own is not None else echo)


def _align_column(own: str, echo: str, caret: int) -> int | None:
    """1-based column in the user's line of the caret under EDG's (macro-expanded) echo of it."""
    if own.replace("\t", " ").rstrip() == echo.rstrip():  # EDG shows a tab as one space
        return caret + 1
    tail = echo[caret:].rstrip()
    if tail and own.rstrip().endswith(tail):
        return len(own.rstrip()) - len(tail) + 1
    token = re.match(r"\w+|\S", echo[caret:])
    if token and own.count(token[0]) == 1:
        return own.index(token[0]) + 1
    return None


def _tool_diagnostic(
    match: re.Match[str],
    source_name: str,
    source_lines: list[str],
    kernels: Mapping[str, KernelSignature],
    ptx: str,
    local_name: str,
) -> Diagnostic:
    message = f"{match['tool']}: {match['msg'].strip()}"
    line = column = None
    if match["line"]:  # a place in the generated PTX: map it back through .loc
        place = _ptx_place(ptx, int(match["line"]), local_name)
        if place:
            line, column = place
        else:
            message += f" (generated PTX line {match['line']})"
    elif named := _NAMED_FUNCTION.search(match["msg"]):
        base = demangle_names([named[1]])[named[1]][0]
        if base in kernels:
            line = kernels[base].line
    own = _own_line(source_name, line, source_name, source_lines)
    return Diagnostic(source_name, line, column, _severity(match["sev"]), message, own)


_LOC = re.compile(r"^\s*\.loc\s+(\d+)\s+(\d+)\s+(\d+)")
_FILE = re.compile(r'^\s*\.file\s+(\d+)\s+"([^"]+)"', re.MULTILINE)


def _ptx_place(ptx: str, ptx_line: int, local_name: str) -> tuple[int, int | None] | None:
    """Source ``(line, column)`` of PTX line ``ptx_line`` from the last ``.loc`` before it."""
    files = dict(_FILE.findall(ptx))
    for text in reversed(ptx.splitlines()[:ptx_line]):
        if loc := _LOC.match(text):
            if Path(files.get(loc[1], "")).name != local_name:
                return None
            return int(loc[2]), int(loc[3]) or None
    return None


_FIXES = (
    (
        "Unsupported gpu architecture",
        "use an architecture this nvcc supports (`nvcc --list-gpu-arch`), e.g. sm_90",
    ),
    ("too much shared data", "use less static __shared__ memory per block, or allocate it dynamically"),
    ("Unknown option", "remove or correct the flag"),
)


def _fix_for(message: str) -> str | None:
    return next((fix for needle, fix in _FIXES if needle in message), None)


_NOTE_ROOM = 40  # room kept for the "... N more" line


def format_diagnostics_for_model(diags: Sequence[Diagnostic], source: str, max_chars: int = 4000) -> str:
    """Errors (then warnings) as compact text for an LLM: each with its source line and a caret.

    ``source`` supplies the line for diagnostics that carry none. The text never exceeds
    ``max_chars``; what does not fit is counted in a last line.
    """
    source_lines = source.splitlines()
    ordered = [d for d in diags if d.severity == "error"] + [d for d in diags if d.severity == "warning"]
    blocks: list[str] = []
    for diag in ordered:
        block = str(diag)
        code = diag.source_line
        if code is None and diag.line is not None and 0 < diag.line <= len(source_lines):
            code = source_lines[diag.line - 1]
        if code is not None and diag.line is not None:
            block += f"\n{diag.line:>5} | {code.rstrip()}"
            if diag.column is not None:
                pad = "".join("\t" if ch == "\t" else " " for ch in code[: diag.column - 1])
                block += f"\n      | {pad}^"
        if block not in blocks:
            blocks.append(block)
    shown: list[str] = []
    for block in blocks:
        room = max_chars - sum(len(b) + 1 for b in shown) - _NOTE_ROOM
        if len(block) > room:
            if not shown:  # always show the start of the first error
                shown.append(block[: max(room - 4, 0)] + " ...")
            break
        shown.append(block)
    if hidden := len(blocks) - len(shown):
        shown.append(f"... {hidden} more diagnostic(s) not shown")
    return "\n".join(shown)[:max_chars]
