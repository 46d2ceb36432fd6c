"""The OpenAI-compatible proposer (local vLLM/Ollama servers) against a local stand-in, over loopback."""

from __future__ import annotations

import time

import pytest
from anthropic_stub import AnthropicStub, chat_completion, edited_source, error, node, reply, request, vector_add_task

from kernelpro.search.interfaces import Usage
from kernelpro.search.llm import Price, ProposerError
from kernelpro.search.openai_compat import OpenAICompatProposer

TASK = vector_add_task()
PATH = "/v1/chat/completions"
SOURCE = edited_source(TASK, "    int i = blockIdx.x * blockDim.x + threadIdx.x;\n    if (i < n) c[i] = b[i] + a[i];")


@pytest.fixture
def stub():
    with AnthropicStub(paths=(PATH,)) as server:
        yield server
    assert server.unexpected == 0, "the proposer made requests nobody scripted"


def proposer(stub: AnthropicStub, **kwargs) -> OpenAICompatProposer:
    options = {"model": "qwen-coder", "base_url": stub.url + "/v1", "api_key": "", "max_retries": 2,
               "timeout_s": 5.0, "backoff_s": 0.001}
    return OpenAICompatProposer(TASK, **{**options, **kwargs})


def test_a_reply_becomes_a_variant_and_the_prompt_is_the_same(stub):
    stub.script(chat_completion(reply(SOURCE, "swap operands"), prompt_tokens=1000, completion_tokens=200, cached=600))
    llm = proposer(stub, price=Price(1.0, 2.0, 0.0, 0.5))
    proposal = llm.propose(request(node(TASK)))
    assert [(v.source, v.change, v.origin) for v in proposal.variants] == [(SOURCE, "swap operands",
                                                                             "openai-compat:qwen-coder")]
    assert proposal.usage == Usage(1000, 200, pytest.approx((400 * 1.0 + 200 * 2.0 + 600 * 0.5) / 1e6))
    [sent] = stub.requests
    system, user = sent.body["messages"]
    assert system == {"role": "system", "content": "\n\n".join(llm.fixed)}
    assert "RULES (pinned" in system["content"] and "Apply prescription #1" in user["content"]
    assert "authorization" not in sent.headers


def test_errors_are_retried_then_reported(stub):
    stub.script(error(429, "rate_limit"), error(503, "unavailable"), chat_completion(reply(SOURCE)))
    assert len(proposer(stub).propose(request(node(TASK))).variants) == 1
    stub.script(*(error(500, "api_error") for _ in range(3)))
    with pytest.raises(ProposerError, match=r"answered 500 \(after the retries\)"):
        proposer(stub).propose(request(node(TASK)))
    assert len(stub.requests) == 3 + 3


def test_a_client_error_is_not_retried(stub):
    stub.script(error(404, "model_not_found", retryable=False))
    with pytest.raises(ProposerError, match="answered 404: .*model_not_found"):
        proposer(stub).propose(request(node(TASK)))
    assert len(stub.requests) == 1


def test_a_slow_server_times_out(stub):
    slow = chat_completion(reply(SOURCE))
    stub.script(type(slow)(slow.status, slow.body, delay_s=3.0))
    started = time.monotonic()
    with pytest.raises(ProposerError, match="cannot get an answer"):
        proposer(stub, timeout_s=0.3, max_retries=0).propose(request(node(TASK)))
    assert time.monotonic() - started < 2.0


def test_a_truncated_reply_is_reasked(stub):
    stub.script(chat_completion(reply(SOURCE), finish_reason="length"), chat_completion(reply(SOURCE)))
    assert len(proposer(stub).propose(request(node(TASK))).variants) == 1
    assert [m["role"] for m in stub.requests[1].body["messages"]] == ["system", "user", "assistant", "user"]
