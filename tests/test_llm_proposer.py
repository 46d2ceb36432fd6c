"""The LLM proposer against a local stand-in for the Anthropic API, through the real SDK over loopback."""

from __future__ import annotations

import json
import logging
import time

import anthropic
import pytest
from anthropic_stub import (
    RAW_COUNTERS,
    AnthropicStub,
    edited_source,
    error,
    message,
    node,
    overloaded,
    rate_limited,
    reply,
    request,
    server_error,
    vector_add_task,
)

from kernelpro.errors import KernelproError
from kernelpro.search.interfaces import Usage
from kernelpro.search.llm import PRICES, LLMProposer, ProposerError, price_for, usage_of

TASK = vector_add_task()
MODEL = "claude-sonnet-5-5"
SOURCES = [edited_source(TASK, f"    int i = blockIdx.x * blockDim.x + threadIdx.x;  // variant {k}\n"
                               "    if (i < n) c[i] = a[i] + b[i];") for k in range(4)]


@pytest.fixture
def stub():
    with AnthropicStub() as server:
        yield server
    assert server.unexpected == 0, "the proposer made requests nobody scripted"


def proposer(stub: AnthropicStub, **kwargs) -> LLMProposer:
    options = {"model": MODEL, "api_key": "test", "base_url": stub.url, "max_retries": 3, "timeout_s": 5.0}
    return LLMProposer(TASK, **{**options, **kwargs})


def user_text(recorded) -> str:
    return json.dumps(recorded.body)


def test_a_good_reply_becomes_a_variant_of_the_parent(stub):
    stub.script(message(reply(SOURCES[0], "grid-stride loop", extra="KNOBS: BLOCK=512"), thinking="let me see"))
    proposal = proposer(stub).propose(request(node(TASK)))
    [variant] = proposal.variants
    assert variant.source == SOURCES[0]
    assert variant.change == "grid-stride loop"
    assert variant.knob_values == {"BLOCK": "512"}
    assert variant.flags == ("-O3",)
    assert variant.origin == f"llm:{MODEL}"
    [sent] = stub.requests
    assert sent.path == "/v1/messages"
    assert sent.body["model"] == MODEL and sent.body["max_tokens"] == 16_000
    assert float(sent.headers["x-stainless-timeout"]) == 5.0  # every request carries the timeout


def test_the_request_holds_the_prescriptions_and_rules_but_no_counters(stub):
    stub.script(message(reply(SOURCES[0])))
    proposer(stub).propose(request(node(TASK)))
    body = user_text(stub.requests[0])
    assert "Apply prescription #1" in body and "Load a and b as float4" in body
    assert "RULES (pinned" in body
    for name in RAW_COUNTERS:
        assert name not in body


def test_n_children_are_n_calls_with_different_nudges(stub):
    stub.script(message(reply(SOURCES[0])), message(reply(SOURCES[1])))
    proposal = proposer(stub).propose(request(node(TASK), n=2))
    assert [v.source for v in proposal.variants] == SOURCES[:2]
    asks = [r.body["messages"][0]["content"][-1]["text"] for r in stub.requests]
    assert "prescription #1" in asks[0] and "prescription #2" in asks[1]


def test_fixed_blocks_are_cached_and_byte_identical_across_parents(stub):
    stub.script(*(message(reply(SOURCES[k])) for k in range(4)))
    llm = proposer(stub)
    llm.propose(request(node(TASK), n=2))
    other = node(TASK, id=5, source=SOURCES[0], knobs={"BLOCK": "128"}, time_us=70.0)
    llm.propose(request(other, n=2, seen={other.key, *(node(TASK).key,)}))
    assert len(stub.requests) == 4
    systems = [json.dumps(r.body["system"]) for r in stub.requests]
    assert len(set(systems)) == 1  # the fixed prefix, byte for byte
    system = stub.requests[0].body["system"]
    assert len(system) == 2 and all(block["cache_control"] == {"type": "ephemeral"} for block in system)
    assert "RULES (pinned" in system[0]["text"] and "TASK: vector_add" in system[1]["text"]
    contexts = [r.body["messages"][0]["content"][0] for r in stub.requests]
    assert all(c["cache_control"] == {"type": "ephemeral"} for c in contexts)
    assert contexts[0] == contexts[1] != contexts[2] == contexts[3]  # one context per parent
    assert all("cache_control" not in r.body["messages"][0]["content"][1] for r in stub.requests)


@pytest.mark.parametrize("failure", [rate_limited, server_error, overloaded])
def test_transient_errors_are_retried(stub, failure):
    stub.script(failure(), failure(), message(reply(SOURCES[0])))
    proposal = proposer(stub, max_retries=3).propose(request(node(TASK)))
    assert [v.source for v in proposal.variants] == [SOURCES[0]]
    assert [r.headers["x-stainless-retry-count"] for r in stub.requests] == ["0", "1", "2"]


def test_a_mix_of_429_500_and_529_is_retried_until_success(stub):
    stub.script(rate_limited(), server_error(), overloaded(), message(reply(SOURCES[0])))
    assert len(proposer(stub, max_retries=3).propose(request(node(TASK))).variants) == 1
    assert len(stub.requests) == 4


def test_exhausted_retries_raise_a_proposer_error(stub):
    stub.script(message(reply(SOURCES[0]), input_tokens=1000, output_tokens=100), overloaded(), overloaded(),
                overloaded())
    with pytest.raises(ProposerError, match=r"answered 529 \(overloaded_error: Overloaded\)") as raised:
        proposer(stub, max_retries=2).propose(request(node(TASK), n=2))
    assert len(stub.requests) == 4  # one good call, then 1 + 2 retries
    assert isinstance(raised.value, KernelproError) and "proposer offline" in str(raised.value)
    assert raised.value.usage.tokens == 1100  # what was spent before the outage is reported


def test_an_auth_error_is_not_retried(stub):
    stub.script(error(401, "authentication_error", "invalid x-api-key", retryable=False))
    with pytest.raises(ProposerError, match="401.*fix: check ANTHROPIC_API_KEY"):
        proposer(stub).propose(request(node(TASK)))
    assert len(stub.requests) == 1


def test_a_request_that_never_answers_times_out(stub):
    slow = message(reply(SOURCES[0]))
    stub.script(type(slow)(slow.status, slow.body, delay_s=3.0))
    started = time.monotonic()
    with pytest.raises(ProposerError, match="did not answer within 0.3 s"):
        proposer(stub, timeout_s=0.3, max_retries=0).propose(request(node(TASK)))
    assert time.monotonic() - started < 2.0


def test_a_malformed_reply_is_reasked_once_with_a_correction(stub):
    stub.script(message("I would use float4 loads.\nCHANGE: float4"), message(reply(SOURCES[0])))
    proposal = proposer(stub).propose(request(node(TASK)))
    assert [v.source for v in proposal.variants] == [SOURCES[0]]
    first, second = stub.requests
    messages = second.body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0] == first.body["messages"][0]
    assert messages[1]["content"] == "I would use float4 loads.\nCHANGE: float4"
    assert "could not be used: the reply has no ```cuda block" in messages[2]["content"]


def test_a_second_malformed_reply_drops_the_slot_with_a_reason(stub, caplog):
    two_blocks = reply(SOURCES[0]) + reply(SOURCES[1])
    wrong = SOURCES[0].replace("int n)", "size_t n)")
    stub.script(message(two_blocks), message(reply(wrong)))
    llm = proposer(stub)
    with caplog.at_level(logging.WARNING, logger="kernelpro.search.llm"):
        proposal = llm.propose(request(node(TASK)))
    assert proposal.variants == ()
    assert len(stub.requests) == 2  # asked once, re-asked once, then given up
    assert len(llm.rejections) == 1 and "parameter list of vector_add changed" in llm.rejections[0]
    assert "dropped attempt 1" in caplog.text
    assert proposal.usage.tokens == 2 * 150  # both replies are paid for


def test_a_reply_cut_off_at_max_tokens_is_malformed(stub):
    stub.script(message(reply(SOURCES[0]), stop_reason="max_tokens"), message(reply(SOURCES[1])))
    proposal = proposer(stub).propose(request(node(TASK)))
    assert [v.source for v in proposal.variants] == [SOURCES[1]]
    assert "cut off at the output token limit" in stub.requests[1].body["messages"][2]["content"]


def test_seen_variants_are_never_returned(stub):
    parent = node(TASK)
    seen_variant = parent.variant.with_knobs({}, change="x", origin="x")
    stub.script(message(reply(TASK.source)),  # the parent itself
                message(reply(SOURCES[0])),
                message(reply(SOURCES[0])),  # the same as attempt 1's
                message(reply(SOURCES[0])))
    llm = proposer(stub)
    proposal = llm.propose(request(parent, n=2, seen={seen_variant.key}))
    assert [v.source for v in proposal.variants] == [SOURCES[0]]
    assert all(v.key != seen_variant.key for v in proposal.variants)
    assert "identical to one already tried" in llm.rejections[0] and llm.rejections[0].startswith("attempt 2")
    assert len(stub.requests) == 4


def test_usage_counts_cache_tokens_and_cost(stub):
    stub.script(message("no code", input_tokens=100, output_tokens=50, cache_creation=1000, cache_read=0),
                message(reply(SOURCES[0]), input_tokens=200, output_tokens=400, cache_creation=0, cache_read=3000))
    proposal = proposer(stub).propose(request(node(TASK)))
    price = PRICES[MODEL]
    cost = (300 * price.input + 450 * price.output + 1000 * price.cache_write + 3000 * price.cache_read) / 1e6
    assert proposal.usage == Usage(tokens_in=300 + 1000 + 3000, tokens_out=450, cost_usd=pytest.approx(cost))
    assert proposal.usage.cost_usd > 0


def test_prices_match_by_the_longest_prefix():
    assert price_for("claude-sonnet-5-5-20261001") == PRICES["claude-sonnet-5-5"]
    assert price_for("claude-sonnet-5") == PRICES["claude-sonnet-5"]
    assert price_for("gpt-oss-20b") is None
    assert usage_of(10, 20, 30, 40, None) == Usage(80, 20, 0.0)


def test_a_given_client_is_used_as_is(stub):
    stub.script(message(reply(SOURCES[0])))
    client = anthropic.Anthropic(base_url=stub.url, api_key="other-key", max_retries=0)
    assert len(LLMProposer(TASK, model=MODEL, client=client).propose(request(node(TASK))).variants) == 1
    assert stub.requests[0].headers["authorization"] == "Bearer other-key"


def test_a_missing_api_key_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(KernelproError) as raised:
        LLMProposer(TASK)
    assert str(raised.value) == "no ANTHROPIC_API_KEY set (fix: export it, or use --proposer offline)"


def test_skills_are_disclosed_progressively(stub):
    """Every skill's description is in the cached system prefix; only the bodies the diagnosis selects (within
    the token budget) are in the parent's context; without a diagnosis the source patterns alone choose."""
    from dataclasses import replace

    from kernelpro import actions
    from kernelpro.search.interfaces import Diagnosis
    from kernelpro.skill_library import BODY_TOKEN_BUDGET, approx_tokens, load_skills, select

    skills = load_skills()
    scalar = Diagnosis("1. Load a and b as float4. Why: scalar loads.", (actions.vectorize_loads(128),),
                       {"prescriptions": [{"tool": "scalar_loads", "actions": [{"kind": "vectorize_loads"}]}]})
    parent = replace(node(TASK), diagnosis=scalar)
    stub.script(message(reply(SOURCES[0])), message(reply(SOURCES[1])))
    llm = proposer(stub)
    llm.propose(request(parent))
    llm.propose(request(node(TASK, id=5, source=SOURCES[2], with_diagnosis=False), seen={"x"}))
    first, second = stub.requests
    system = first.body["system"][1]["text"]
    assert all(f"- {s.name}: {s.description}" in system for s in skills)
    assert first.body["system"] == second.body["system"]  # the catalog is in the cached, fixed prefix
    context = first.body["messages"][0]["content"][0]["text"]
    vectorized = next(s for s in skills if s.name == "vectorized-elementwise")
    assert "=== skill: vectorized-elementwise ===" in context and vectorized.body.strip() in context
    bodies = context[context.index("SKILLS FOR THIS DIAGNOSIS") : context.index("HISTORY")]
    assert bodies.count("=== skill: ") <= 2 and approx_tokens(bodies) <= BODY_TOKEN_BUDGET + 50
    undiagnosed = second.body["messages"][0]["content"][0]["text"]
    by_source = select(skills, [], SOURCES[2])
    assert [s.name for s in skills if f"=== skill: {s.name} ===" in undiagnosed] == sorted(s.name for s in by_source)
    assert select(skills, [], "int main() { return 0; }") == ()  # nothing matches: no body is sent
