"""A proposer for OpenAI-compatible chat endpoints: a local vLLM, Ollama or llama.cpp server.

It sends ``POST {base_url}/chat/completions`` with plain :mod:`urllib` (no extra dependency) and
shares everything else with :class:`~kernelpro.search.llm.LLMProposer`: the prompts, one call per
child, extraction, the repair turn and the report policy (:class:`~kernelpro.search.llm.ChatProposer`).

There are no cache markers in this API; servers with prefix caching (vLLM, llama.cpp) reuse the
fixed part by themselves, since it comes first and is byte-identical across calls. Retries: 408,
409, 429, 5xx and connection errors, ``max_retries`` times, waiting what ``retry-after`` says (at
most :data:`MAX_WAIT_S`) or an exponential backoff; each request times out after ``timeout_s``.
Cost is $0 unless a :class:`~kernelpro.search.llm.Price` is given (a local model costs no dollars).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from kernelpro.search.llm import ChatProposer, Price, ProposerError, Reply, usage_of
from kernelpro.search.prompt import Prompt
from kernelpro.skill_library import Skill
from kernelpro.task import Task

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
MAX_WAIT_S = 60.0
RETRY_STATUSES = frozenset({408, 409, 429})


class OpenAICompatProposer(ChatProposer):
    """Proposes variants with a model served behind an OpenAI-compatible ``/chat/completions``.

    ``api_key`` (default: ``OPENAI_API_KEY``, if set) is sent as a bearer token; local servers
    usually need none.
    """

    def __init__(
        self,
        task: Task,
        *,
        model: str,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        max_retries: int = 4,
        timeout_s: float = 600.0,
        max_tokens: int = 16_000,
        repairs: int = 1,
        price: Price | None = None,
        backoff_s: float = 0.5,
        skills: Sequence[Skill] | None = None,
    ) -> None:
        super().__init__(task, repairs=repairs, skills=skills)
        if max_retries < 0 or timeout_s <= 0:
            raise ValueError("max_retries must be >= 0 and timeout_s > 0")
        self.model = model
        self.origin = f"openai-compat:{model}"
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.price = price
        self.backoff_s = backoff_s

    def request_body(self, prompt: Prompt, turns: Sequence[str]) -> dict[str, Any]:
        """The chat completion request: the fixed part as the system message, then the conversation."""
        messages = [{"role": "system", "content": "\n\n".join(prompt.fixed)},
                    {"role": "user", "content": f"{prompt.context}\n\n{prompt.ask}"}]
        for i, text in enumerate(turns):
            messages.append({"role": "assistant" if i % 2 == 0 else "user", "content": text or "(empty reply)"})
        return {"model": self.model, "max_tokens": self.max_tokens, "messages": messages}

    def complete(self, prompt: Prompt, turns: Sequence[str]) -> Reply:
        data = json.dumps(self.request_body(prompt, turns)).encode()
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return self._reply(json.load(response))
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:300]
                retryable = exc.code in RETRY_STATUSES or exc.code >= 500
                if last or not retryable:
                    after = " (after the retries)" if retryable else ""
                    raise ProposerError(f"{self.url} answered {exc.code}{after}: {detail}",
                                        fix="check the server, the model name and the base URL") from None
                time.sleep(self._wait(attempt, exc.headers))
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if last:
                    reason = getattr(exc, "reason", exc)
                    raise ProposerError(f"cannot get an answer from {self.url}: {reason}",
                                        fix="check that the server is running at the base URL") from None
                time.sleep(self._wait(attempt, None))
            except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
                raise ProposerError(f"{self.url} sent a response that is not a chat completion: {exc!r}",
                                    fix="point the base URL at an OpenAI-compatible /v1 endpoint") from None
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait(self, attempt: int, headers: Mapping[str, str] | None) -> float:
        for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
            try:
                wait = float(headers.get(name)) * scale if headers is not None else -1.0
            except (TypeError, ValueError):
                continue
            if wait > 0:
                return min(wait, MAX_WAIT_S)
        return min(self.backoff_s * 2**attempt, 8.0)

    def _reply(self, body: Mapping[str, Any]) -> Reply:
        choice = body["choices"][0]
        usage = body.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        counted = usage_of(prompt_tokens - cached, int(usage.get("completion_tokens") or 0), 0, cached, self.price)
        return Reply(choice["message"].get("content") or "", counted, choice.get("finish_reason") == "length")
