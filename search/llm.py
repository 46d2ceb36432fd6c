"""The LLM proposer: asks a model (Anthropic's Messages API) for new variants of a kernel.

**One variant per call.** For ``n`` children it makes ``n`` calls that share the prompt except the
last block, which nudges call *k* towards prescription *k* of the diagnosis (then other angles, see
:func:`kernelpro.search.prompt.ask_block`); the rules ask for exactly one code block per reply, so
one reply is one candidate, and a bad reply costs one candidate, not ``n``.

**Prompt caching.** The role, the rules card and the task (:func:`~kernelpro.search.prompt.fixed_blocks`)
are system blocks marked ``cache_control: ephemeral``, byte-identical for every call of a run; the
parent's context is a second cached block (shared by the ``n`` calls for that parent); the nudge
comes last, uncached. Skills are disclosed progressively: every skill's description sits in the cached
task block; the full bodies of the one or two the parent's diagnosis selects (within
:data:`kernelpro.skill_library.BODY_TOKEN_BUDGET` tokens) sit in the parent's context.

**Retries and reports.**

- Rate limits (429), overload (529), other 5xx, 408/409 and connection errors are retried by the SDK
  (``max_retries``, exponential backoff honouring ``retry-after``); every request has a timeout
  (``timeout_s``). When the SDK gives up, or the API refuses the request (bad key, unknown model),
  :meth:`propose` raises :class:`ProposerError`, a :class:`~kernelpro.errors.KernelproError` whose
  ``usage`` holds what the call had spent. It never returns an empty proposal for an outage: that
  would mark the parent saturated and quietly end the search; the journaled search resumes instead.
- A reply that cannot become a variant (no or several code blocks, a changed signature, an unknown
  knob value, cut off at ``max_tokens``, or identical to a kernel already in the tree) is answered
  once (``repairs``) with a short correction in the same conversation. If that fails too, the slot
  is dropped: the proposal holds the variants that worked, possibly none (the search then treats the
  parent as saturated). Why each slot was dropped is logged and kept in :attr:`ChatProposer.rejections`.

**Usage** counts every reply, usable or not: tokens in = uncached input + cache writes + cache reads,
tokens out = output (thinking included), dollars from :data:`PRICES`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

import anthropic

from kernelpro.errors import KernelproError
from kernelpro.search import prompt as prompts
from kernelpro.search.extract import MalformedReply, extract_kernel
from kernelpro.search.interfaces import Proposal, ProposalRequest, Usage
from kernelpro.search.prompt import Prompt
from kernelpro.search.variant import Variant
from kernelpro.skill_library import Skill, load_skills, select, signals_of
from kernelpro.task import Task

log = logging.getLogger(__name__)

# The current Sonnet (the SDK flags claude-sonnet-4-5 as deprecated, end of life 2026-11-30). No temperature is
# sent: Sonnet 5 and later reject non-default sampling parameters.
DEFAULT_MODEL = "claude-sonnet-5-5"
EPHEMERAL = {"type": "ephemeral"}


@dataclass(frozen=True)
class Price:
    """USD per million tokens: uncached input, output, 5-minute cache writes and cache reads."""

    input: float
    output: float
    cache_write: float
    cache_read: float


# USD per million tokens for the Claude API, as of 2026-10. Source: https://platform.claude.com/docs/en/about-claude/pricing
# and the model overview pages (platform.claude.com/docs/en/models/<model>/overview); Sonnet 5.5 cache reads
# were cut from $0.20 to $0.10 on 2026-10-07. Haiku 5.5: the rates for prompts up to 100K tokens (ours are
# far smaller). Keys are model-name prefixes: the longest match wins, so dated snapshots find their model.
PRICES: Mapping[str, Price] = {
    "claude-sonnet-5-5": Price(2.00, 10.00, 2.50, 0.10),
    "claude-sonnet-5": Price(2.00, 10.00, 2.50, 0.20),
    "claude-sonnet-4-6": Price(3.00, 15.00, 3.75, 0.30),
    "claude-sonnet-4-5": Price(3.00, 15.00, 3.75, 0.30),
    "claude-opus-5-5": Price(4.00, 20.00, 5.00, 0.20),
    "claude-opus-5": Price(5.00, 25.00, 6.25, 0.50),
    "claude-opus-4-5": Price(5.00, 25.00, 6.25, 0.50),
    "claude-haiku-5-5": Price(0.10, 0.50, 0.125, 0.01),
    "claude-haiku-4-5": Price(1.00, 5.00, 1.25, 0.10),
}


def price_for(model: str, prices: Mapping[str, Price] = PRICES) -> Price | None:
    """The price of ``model``: the table entry with the longest matching prefix, or None."""
    keys = [key for key in prices if model.startswith(key)]
    return prices[max(keys, key=len)] if keys else None


def usage_of(fresh_in: int, out: int, cache_write: int, cache_read: int, price: Price | None) -> Usage:
    """A reply's :class:`Usage` from its token counts (cost 0 when the model has no price)."""
    cost = 0.0
    if price is not None:
        cost = (fresh_in * price.input + out * price.output + cache_write * price.cache_write
                + cache_read * price.cache_read) / 1e6
    return Usage(fresh_in + cache_write + cache_read, out, cost)


class ProposerError(KernelproError):
    """The model's API could not answer (after retries); ``usage`` is what the call spent before that."""

    def __init__(self, message: str, *, fix: str | None = None, usage: Usage | None = None) -> None:
        self.usage = usage or Usage()
        super().__init__(message, fix=fix)


@dataclass(frozen=True)
class Reply:
    """A model's answer: its text, what it cost and whether it stopped at the output token limit."""

    text: str
    usage: Usage
    truncated: bool = False


class ChatProposer:
    """The provider-independent part: prompts, one call per child, extraction, repairs, de-duplication.

    Subclasses implement :meth:`complete`: send ``prompt`` plus any follow-up ``turns`` (alternating
    the model's earlier reply and our correction) and return the :class:`Reply`, raising
    :class:`ProposerError` when the service cannot answer.
    """

    origin = "llm"

    def __init__(self, task: Task, *, repairs: int = 1, skills: Sequence[Skill] | None = None) -> None:
        if repairs < 0:
            raise ValueError(f"repairs must be >= 0, got {repairs}")
        self.task = task
        self.repairs = repairs
        self.skills = tuple(load_skills() if skills is None else skills)  # default: the built-in skills
        self.fixed = prompts.fixed_blocks(task, self.skills)
        self.rejections: tuple[str, ...] = ()  # why slots of the last proposal were dropped

    def complete(self, prompt: Prompt, turns: Sequence[str]) -> Reply:
        raise NotImplementedError

    def propose(self, request: ProposalRequest) -> Proposal:
        """Up to ``request.n`` new variants of ``request.parent`` (see the module docstring)."""
        context = prompts.context_block(request, self.selected_skills(request))
        variants: list[Variant] = []
        taken: set[str] = set()
        usage = Usage()
        rejections: list[str] = []
        for attempt in range(request.n):
            prompt = Prompt(self.fixed, context, prompts.ask_block(request.parent.diagnosis, attempt, request.n))
            turns: list[str] = []
            reason = ""
            for _ in range(self.repairs + 1):
                try:
                    reply = self.complete(prompt, turns)
                except ProposerError as error:
                    error.usage = usage + error.usage
                    raise
                usage += reply.usage
                try:
                    variant = self._variant(reply, request, taken)
                except MalformedReply as bad:
                    reason = str(bad)
                    turns += [reply.text, prompts.correction(reason)]
                    continue
                variants.append(variant)
                taken.add(variant.key)
                break
            else:
                rejections.append(f"attempt {attempt + 1}: {reason}")
                log.warning("%s: dropped attempt %d for node %d: %s", self.origin, attempt + 1,
                            request.parent.id, reason)
        self.rejections = tuple(rejections)
        return Proposal(tuple(variants), usage)

    def selected_skills(self, request: ProposalRequest) -> tuple[Skill, ...]:
        """The skills whose full body goes with this parent: chosen by its diagnosis and its source."""
        diagnosis = request.parent.diagnosis
        signals = signals_of(dict(diagnosis.details) if diagnosis else None,
                             [a.kind for a in diagnosis.actions] if diagnosis else ())
        return select(self.skills, signals, request.parent.variant.source)

    def _variant(self, reply: Reply, request: ProposalRequest, taken: Set[str]) -> Variant:
        if reply.truncated:
            raise MalformedReply("the reply was cut off at the output token limit; send only the code block "
                                 "and the CHANGE line, no explanations")
        parent = request.parent.variant
        extracted = extract_kernel(reply.text, self.task, parent.knob_values)
        if extracted.metadata_restored:
            log.info("%s: put the task's metadata comment back into a reply", self.origin)
        knobs = {**parent.knob_values, **extracted.knobs}
        variant = Variant(extracted.source, tuple(knobs.items()), parent.flags, extracted.change, self.origin)
        if variant.key in request.seen_keys or variant.key in taken:
            raise MalformedReply("this kernel (source and knobs) is identical to one already tried; make a real change")
        return variant


class LLMProposer(ChatProposer):
    """Proposes variants with Claude through the ``anthropic`` SDK.

    ``client`` is used as given (tests pass one pointed at a local server); otherwise one is built from
    ``api_key`` (default: ``ANTHROPIC_API_KEY``), ``base_url``, ``max_retries`` and ``timeout_s``.
    ``timeout_s`` also bounds each request made through a given client.
    """

    def __init__(
        self,
        task: Task,
        *,
        model: str = DEFAULT_MODEL,
        client: anthropic.Anthropic | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = 4,
        timeout_s: float = 600.0,
        max_tokens: int = 16_000,
        repairs: int = 1,
        prices: Mapping[str, Price] = PRICES,
        skills: Sequence[Skill] | None = None,
    ) -> None:
        super().__init__(task, repairs=repairs, skills=skills)
        if max_retries < 0 or timeout_s <= 0:
            raise ValueError("max_retries must be >= 0 and timeout_s > 0")
        self.model = model
        self.origin = f"llm:{model}"
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.price = price_for(model, prices)
        if self.price is None:
            log.warning("no price known for model %r: its cost is counted as $0 (tokens are still counted)", model)
        if client is None:
            key = api_key or os.environ.get("ANTHROPIC_API_KEY")
            if not key:
                raise KernelproError("no ANTHROPIC_API_KEY set", fix="export it, or use --proposer offline")
            client = anthropic.Anthropic(api_key=key, base_url=base_url, max_retries=max_retries, timeout=timeout_s)
        self.client = client

    def request_body(self, prompt: Prompt, turns: Sequence[str]) -> dict[str, Any]:
        """The Messages API arguments for ``prompt`` (fixed blocks and context cached, the ask last)."""
        system = [{"type": "text", "text": block, "cache_control": EPHEMERAL} for block in prompt.fixed]
        first = [{"type": "text", "text": prompt.context, "cache_control": EPHEMERAL},
                 {"type": "text", "text": prompt.ask}]
        messages: list[dict[str, Any]] = [{"role": "user", "content": first}]
        for i, text in enumerate(turns):
            messages.append({"role": "assistant" if i % 2 == 0 else "user", "content": text or "(empty reply)"})
        return {"model": self.model, "max_tokens": self.max_tokens, "system": system, "messages": messages}

    def complete(self, prompt: Prompt, turns: Sequence[str]) -> Reply:
        try:
            message = self.client.messages.create(**self.request_body(prompt, turns), timeout=self.timeout_s)
        except anthropic.APITimeoutError:
            raise ProposerError(f"the Anthropic API did not answer within {self.timeout_s:g} s (on every try)",
                                fix="try again later, raise the timeout, or use --proposer offline") from None
        except anthropic.APIConnectionError as exc:
            raise ProposerError(f"cannot reach the Anthropic API: {exc}",
                                fix="check the network, or use --proposer offline") from None
        except anthropic.APIStatusError as exc:
            raise _status_error(exc, self.model) from None
        text = "".join(block.text for block in message.content if block.type == "text")
        u = message.usage
        usage = usage_of(u.input_tokens, u.output_tokens, u.cache_creation_input_tokens or 0,
                         u.cache_read_input_tokens or 0, self.price)
        return Reply(text, usage, message.stop_reason == "max_tokens")


def _status_error(exc: anthropic.APIStatusError, model: str) -> ProposerError:
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    what = f"{error.get('type', 'error')}: {error.get('message', '')}" if isinstance(error, dict) else exc.message
    status = exc.status_code
    message = f"the Anthropic API answered {status} ({what})"
    if status in (401, 403):
        return ProposerError(message, fix="check ANTHROPIC_API_KEY, or use --proposer offline")
    if status in (400, 404):
        return ProposerError(message, fix=f"check the model name {model!r} and the request limits")
    if status in (408, 409, 429) or status >= 500:  # the statuses the SDK retries
        return ProposerError(f"{message}, and again after the retries",
                             fix="try again later, or use --proposer offline")
    return ProposerError(message, fix="use --proposer offline if it persists")
