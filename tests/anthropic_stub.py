"""A local stand-in for the Anthropic Messages API, and the fixtures the LLM proposer tests share.

:class:`AnthropicStub` serves ``POST /v1/messages`` (or the ``paths`` it is given, such as an
OpenAI-style ``/v1/chat/completions``) on 127.0.0.1, on a port the OS picks, from a thread. It records
every request (path, headers, JSON body) and answers from a scripted queue: a test queues the
responses it means to cause, in order, and the real ``anthropic`` SDK talks to it over loopback.
A request to another path, or beyond the script, gets an error with ``x-should-retry: false`` and is counted in
:attr:`AnthropicStub.unexpected`, and ``max_requests`` caps the total, so a test that asks more than
it scripted fails at once instead of hanging. Retryable errors carry ``retry-after: 0`` and
``retry-after-ms: 1``: the SDK honours a positive wait as given (0 would fall back to its exponential
backoff, half a second and up), so retries take a millisecond.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kernelpro.search.interfaces import Diagnosis, Node, ProposalRequest
from kernelpro.search.variant import Evaluation, Variant
from kernelpro.task import Task
from kernelpro.task_loader import load_task

REPO = Path(__file__).resolve().parents[1]
MAX_DELAY_S = 5.0  # no scripted response sleeps longer, whatever a test asks


@dataclass(frozen=True)
class Scripted:
    """One scripted response: status, JSON body (or raw text), headers, and a delay before sending."""

    status: int
    body: dict[str, Any] | str
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Recorded:
    """One request the stub received: path, headers (lower-case names) and the parsed JSON body."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def message(text: str, *, input_tokens: int = 100, output_tokens: int = 50, cache_creation: int = 0,
            cache_read: int = 0, stop_reason: str = "end_turn", model: str = "claude-test",
            thinking: str | None = None) -> Scripted:
    """A successful Messages API response whose content is ``text`` (after a thinking block, if given)."""
    content: list[dict[str, Any]] = []
    if thinking is not None:
        content.append({"type": "thinking", "thinking": thinking, "signature": "stub"})
    content.append({"type": "text", "text": text})
    usage = {"input_tokens": input_tokens, "output_tokens": output_tokens,
             "cache_creation_input_tokens": cache_creation, "cache_read_input_tokens": cache_read}
    body = {"id": "msg_stub", "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": None, "usage": usage}
    return Scripted(200, body)


def chat_completion(text: str, *, prompt_tokens: int = 100, completion_tokens: int = 50, cached: int = 0,
                    finish_reason: str = "stop") -> Scripted:
    """A successful OpenAI-style ``/v1/chat/completions`` response (for the OpenAI-compatible proposer)."""
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens, "prompt_tokens_details": {"cached_tokens": cached}}
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
    return Scripted(200, {"id": "chatcmpl-stub", "object": "chat.completion", "model": "stub", "choices": [choice],
                          "usage": usage})


def error(status: int, kind: str, text: str = "scripted error", *, retryable: bool = True) -> Scripted:
    """An API error response; ``retryable`` adds the near-zero ``retry-after`` headers."""
    headers = {"retry-after": "0", "retry-after-ms": "1"} if retryable else {}
    return Scripted(status, {"type": "error", "error": {"type": kind, "message": text}}, headers)


def rate_limited() -> Scripted:
    return error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit")


def overloaded() -> Scripted:
    return error(529, "overloaded_error", "Overloaded")


def server_error() -> Scripted:
    return error(500, "api_error", "Internal server error")


class AnthropicStub:
    """The scripted local server (see the module docstring). Use it as a context manager."""

    def __init__(self, max_requests: int = 40, paths: tuple[str, ...] = ("/v1/messages",)) -> None:
        self.max_requests = max_requests
        self.paths = paths
        self.requests: list[Recorded] = []
        self.unexpected = 0
        self._script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def remaining(self) -> int:
        """Scripted responses not served yet."""
        with self._lock:
            return len(self._script)

    def script(self, *responses: Scripted) -> None:
        """Queue responses, served in order, one per request."""
        with self._lock:
            self._script.extend(responses)

    def __enter__(self) -> AnthropicStub:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self, recorded: Recorded) -> Scripted:
        with self._lock:
            self.requests.append(recorded)
            if recorded.path not in self.paths:
                self.unexpected += 1
                return Scripted(404, {"type": "error", "error": {"type": "not_found_error", "message": "no route"}})
            if self._script and len(self.requests) <= self.max_requests:
                return self._script.popleft()
            self.unexpected += 1
            body = {"type": "error", "error": {"type": "invalid_request_error", "message": "unscripted request"}}
            return Scripted(400, body, {"x-should-retry": "false"})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"unparsed": raw.decode(errors="replace")}
                headers = {k.lower(): v for k, v in self.headers.items()}
                response = stub._next(Recorded(self.path.split("?")[0], headers, body))
                time.sleep(min(response.delay_s, MAX_DELAY_S))
                payload = response.body if isinstance(response.body, str) else json.dumps(response.body)
                data = payload.encode()
                try:
                    self.send_response(response.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for name, value in response.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): nothing to answer

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
                pass

        return Handler


# --- fixtures shared by the LLM proposer tests -------------------------------------------------------

DIAGNOSIS_TEXT = """\
Roofline: memory-bound: DRAM at 61% of peak (SM 9%); 61% of the DRAM roofline at 0.0833 FLOP/byte (ridge 21.6)
Prescriptions, most expected gain first:
1. Load a and b as float4 (128-bit vectorized loads). Why: each warp issues 32-bit loads, so the kernel needs 4x \
the load instructions to move the same bytes. Expected speed-up 1.2x-1.5x.
2. Process several elements per thread in a grid-stride loop. Why: 262144 blocks of 256 threads cost more in \
block scheduling than they do in work. Expected speed-up 1.1x-1.2x."""

# What a diagnosis keeps in ``details`` (raw ncu counters): it must never reach a prompt.
RAW_COUNTERS = {
    "dram__bytes_read.sum": 536870912.0,
    "sm__throughput.avg.pct_of_peak_sustained_elapsed": 9.1,
    "smsp__inst_executed_op_global_ld.sum": 4194304.0,
}


def vector_add_task() -> Task:
    return load_task(REPO / "tasks" / "vector_add.cu")


def diagnosis() -> Diagnosis:
    return Diagnosis(DIAGNOSIS_TEXT, (), {"counters": RAW_COUNTERS})


def node(task: Task, *, id: int = 0, source: str | None = None, knobs: dict[str, str] | None = None,  # noqa: A002
         time_us: float = 100.0, with_diagnosis: bool = True, change: str = "baseline") -> Node:
    """A passing node of ``task`` (the task's own source and default knobs unless given)."""
    knob_values = knobs if knobs is not None else {k: str(v) for k, v in task.default_knobs().items()}
    variant = Variant(source if source is not None else task.source, tuple(knob_values.items()), ("-O3",),
                      change, "task" if id == 0 else "llm")
    return Node(id, None if id == 0 else 0, 0 if id == 0 else 1, 0 if id == 0 else 1, variant,
                Evaluation.passed(time_us), diagnosis() if with_diagnosis else None)


def request(parent: Node, *, n: int = 1, feedback: tuple[str, ...] = (), memory: str = "",
            seen: set[str] | None = None, baseline_us: float = 100.0) -> ProposalRequest:
    """A proposal request for children of ``parent``; ``seen`` defaults to the parent's key."""
    return ProposalRequest(parent, n, feedback, memory, seen if seen is not None else {parent.key}, baseline_us)


def edited_source(task: Task, body: str) -> str:
    """``task``'s file with the entry kernel's body replaced by ``body`` (the signature kept)."""
    start = task.source.index("{", task.signature.start)
    return task.source[: start + 1] + "\n" + body.rstrip() + "\n}\n"


def reply(source: str, change: str = "vectorized loads", *, language: str = "cuda", extra: str = "") -> str:
    """A model reply holding ``source`` in one fenced block, then the CHANGE line (and ``extra`` lines)."""
    text = f"Here is the kernel.\n\n```{language}\n{source.rstrip()}\n```\nCHANGE: {change}\n"
    return text + (extra + "\n" if extra else "")
