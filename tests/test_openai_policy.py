"""The `openai` policy against a real local OpenAI-compatible HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from engine.config import Endpoint, EngineConfig, EpisodeSpec, PolicyConfig, Sampling
from engine.engine import Engine
from engine.envs.local import build_environment, tool_schemas
from engine.events import EventLog, MemorySink
from engine.policies.factory import ModelFactory
from engine.results import EpisodeResult
from engine.trajectory import MALFORMED_ARGUMENTS, rescore
from tests.fake_openai_server import FakeOpenAI, Fault, distinct_ticket_tasks, gold_agent

TASKS = distinct_ticket_tasks("telecom")
TASK = TASKS[0]
KEY = "sk-run-key"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(gold_agent(TASKS, solo_mode=True)).running() as srv:
        yield srv


@pytest.fixture(autouse=True)
def fresh(server: FakeOpenAI) -> None:
    server.requests.clear()
    server.faults.clear()


def spec(server: FakeOpenAI, task: Any = TASK, *, sampling: Sampling | None = None,
         **endpoint: Any) -> EpisodeSpec:
    options: dict[str, Any] = {"timeout_s": 5.0, "backoff_s": 0.01, **endpoint}
    return EpisodeSpec(
        domain="telecom",
        task_id=task.id,
        solo_mode=True,
        policy=PolicyConfig(
            name="openai",
            endpoint=Endpoint(base_url=server.base_url, api_key=KEY, model="policy-m", **options),
            sampling=sampling or Sampling(),
        ),
    )


async def run(*specs: EpisodeSpec, **config: Any) -> tuple[list[EpisodeResult], MemorySink]:
    sink = MemorySink()
    cfg = EngineConfig(concurrency=8, **config)
    engine = Engine(cfg, EventLog(cfg.run_id, [sink]))
    results: list[EpisodeResult] = []
    try:
        await engine.run(specs, results.append)
    finally:
        await engine.aclose()
    return results, sink


def episode_events(sink: MemorySink, result: EpisodeResult) -> list[dict[str, Any]]:
    return [e for e in sink.events if e.get("episode_id") == result.episode_id]


@pytest.mark.anyio
async def test_gold_actions_reach_reward_1_with_key_sampling_and_usage_on_the_wire(
    server: FakeOpenAI,
) -> None:
    sampling = Sampling(temperature=0.5, top_p=0.9, max_completion_tokens=321, seed=11)
    results, sink = await run(*(spec(server, t, sampling=sampling) for t in TASKS[:4]))
    assert [r.status.value for r in results] == ["completed"] * 4
    assert all(r.reward == 1.0 and isinstance(r.reward, float) for r in results)
    assert server.requests
    for req in server.requests:
        assert req.headers["authorization"] == f"Bearer {KEY}"
        body = req.body
        assert (body["model"], body["temperature"], body["top_p"]) == ("policy-m", 0.5, 0.9)
        assert (body["max_tokens"], body["seed"]) == (321, 11)
        assert "max_completion_tokens" not in body  # AReaL's proxy refuses both at once
    turns = sink.named("turn")
    assert len(turns) == len(server.requests)
    for turn in turns:
        assert turn["usage"]["total_tokens"] > 0 and turn["usage"]["input_tokens"] > 0
        assert turn["latency_s"] > 0 and turn["model"] == "policy-m"


@pytest.mark.anyio
async def test_tools_on_the_wire_are_tau2_names_and_schemas(server: FakeOpenAI) -> None:
    results, _ = await run(spec(server))
    assert results[0].reward == 1.0
    env = build_environment(spec(server), TASK)
    expected = {s.name: s.parameters for s in tool_schemas(env, solo_mode=True)}
    offered = {t["function"]["name"]: t["function"]["parameters"]
               for t in server.requests[0].body["tools"]}
    assert offered.keys() == expected.keys()
    for name, params in expected.items():
        assert offered[name]["properties"] == params["properties"], name


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Fault(status=429), "RateLimitError"),
        (Fault(status=500), "InternalServerError"),
        (Fault(status=503), "InternalServerError"),
        (Fault(delay_s=1.5), "APITimeoutError"),
    ],
    ids=["429", "500", "503", "timeout"],
)
async def test_transient_faults_are_retried_and_recorded(
    server: FakeOpenAI, fault: Fault, error_type: str
) -> None:
    server.inject(fault, fault)
    results, sink = await run(spec(server, timeout_s=0.4))
    assert results[0].status.value == "completed" and results[0].reward == 1.0
    retries = sink.named("retry")
    assert [(r["attempt"], r["scope"], r["error_type"]) for r in retries] == [
        (0, "model_call", error_type), (1, "model_call", error_type)]
    assert all(r["backoff_s"] > 0 and r["episode_id"] == results[0].episode_id for r in retries)


@pytest.mark.anyio
async def test_faults_past_the_retry_budget_end_the_episode_infra_error(server: FakeOpenAI) -> None:
    server.inject(Fault(status=502), Fault(status=502), Fault(status=502))
    results, sink = await run(spec(server, max_retries=2))
    result = results[0]
    assert (result.status.value, result.error_type, result.reward) == ("infra_error", "ModelError", 0.0)
    assert "3 attempts" in (result.error or "")
    assert len(sink.named("retry")) == 2
    assert len(sink.named("episode_end")) == 1


@pytest.mark.anyio
async def test_a_400_that_is_not_an_overflow_is_infra_error_and_not_retried(server: FakeOpenAI) -> None:
    server.inject(Fault(status=400, message="'tools' is not supported by this model"))
    results, sink = await run(spec(server))
    assert (results[0].status.value, results[0].error_type) == ("infra_error", "BadRequestError")
    assert "not supported" in (results[0].error or "")
    assert sink.named("retry") == [] and len(server.requests) == 1


OVERFLOWS = {
    "openai-400": (400, "This model's maximum context length is 8192 tokens. However, you requested 9917"),
    "llama-cpp-python-400": (400, "Requested tokens (9811) exceed context window of 8192"),
    "sglang-400": (400, "The input (9000 tokens) is longer than the model's context length (8192 tokens)."),
    "reported-as-500": (500, "the request exceeds the available context size, try increasing it"),
}


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "message"), OVERFLOWS.values(), ids=OVERFLOWS.keys())
async def test_context_overflow_is_the_agents_error_and_never_retried(
    server: FakeOpenAI, status: int, message: str
) -> None:
    server.inject(Fault(), Fault(status=status, message=message))  # the second call overflows
    results, sink = await run(spec(server))
    result = results[0]
    assert (result.status.value, result.error_type, result.reward) == ("agent_error", "ContextOverflow", 0.0)
    assert message[:30] in (result.error or "")
    assert sink.named("retry") == [] and len(server.requests) == 2
    (end,) = sink.named("episode_end")
    assert (end["error_type"], end["error"]) == ("ContextOverflow", result.error)


@pytest.mark.anyio
@pytest.mark.parametrize("status", [401, 403, 404])
async def test_a_rejected_key_or_model_stops_the_run_at_the_first_episode(
    server: FakeOpenAI, status: int
) -> None:
    server.inject(*[Fault(status=status, message="invalid api key")] * 20)
    specs = [spec(server, t) for t in TASKS[:6]]
    sink = MemorySink()
    cfg = EngineConfig(concurrency=1)
    engine = Engine(cfg, EventLog(cfg.run_id, [sink]))
    summary = await engine.run(specs)
    assert summary.stopped_by is not None
    assert summary.stopped_by.error_type == "EndpointRejected"
    assert f"HTTP {status}" in (summary.stopped_by.error or "")
    assert len(server.requests) == 1 and sink.named("retry") == []
    ends = sink.named("episode_end")
    assert [e["status"] for e in ends][0] == "infra_error"
    assert all(e["status"] == "cancelled" for e in ends[1:])
    (run_end,) = sink.named("run_end")
    assert run_end["stopped_by"]["episode_id"] == summary.stopped_by.episode_id


@pytest.mark.anyio
async def test_an_empty_reply_is_asked_again_as_tau2_does(server: FakeOpenAI) -> None:
    server.inject(Fault(reply=(None, [])), Fault(reply=("  ", [])))
    results, sink = await run(spec(server))
    result = results[0]
    assert (result.status.value, result.reward) == ("completed", 1.0)
    retries = sink.named("retry")
    assert [(r["attempt"], r["error_type"]) for r in retries] == [(0, "EmptyMessage"), (1, "EmptyMessage")]
    # no empty message reached the trajectory; every request was counted
    assert all(t["content"] or t["tool_calls"] for t in sink.named("turn"))
    assert result.model_calls == len(server.requests)


@pytest.mark.anyio
async def test_empty_replies_past_tau2s_retries_end_agent_error(server: FakeOpenAI) -> None:
    server.inject(*[Fault(reply=(None, []))] * 4)
    results, sink = await run(spec(server))
    result = results[0]
    assert (result.status.value, result.error_type, result.reward) == ("agent_error", "EmptyMessage", 0.0)
    assert "neither text nor tool calls" in (result.error or "")
    assert len(server.requests) == 4 and sink.named("turn") == []


@pytest.mark.anyio
async def test_a_solo_text_reply_ends_agent_error_saying_why(server: FakeOpenAI) -> None:
    server.inject(Fault(reply=("I think your phone is fine.", [])))
    results, sink = await run(spec(server))
    result = results[0]
    assert (result.status.value, result.error_type) == ("agent_error", "TextInSolo")
    assert "I think your phone is fine." in (result.error or "")
    (end,) = sink.named("episode_end")
    assert end["termination_reason"] == "agent_error" and end["error"] == result.error


@pytest.mark.anyio
async def test_a_step_budget_end_says_why(server: FakeOpenAI) -> None:
    results, _ = await run(replace(spec(server), max_steps=2))
    result = results[0]
    assert (result.status.value, result.error_type) == ("max_steps", "StepBudgetExhausted")
    assert "max_steps=2" in (result.error or "")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "expected_error"),
    [
        (Fault(malformed_args=True), "unexpected keyword argument 'malformed_json_arguments'"),
        (Fault(unknown_tool=True), "Tool 'frobnicate_widget' not found"),
    ],
    ids=["malformed-json", "unknown-tool"],
)
async def test_bad_tool_calls_are_answered_as_tool_errors_and_rescoring_agrees(
    server: FakeOpenAI, fault: Fault, expected_error: str
) -> None:
    server.inject(Fault(), fault)  # the second model call goes wrong
    results, sink = await run(spec(server))
    result = results[0]
    assert result.status.value == "completed" and result.reward == 1.0
    events = episode_events(sink, result)
    errors = [e for e in sink.named("tool_call") if e["error"]]
    assert len(errors) == 1 and expected_error in errors[0]["result"]
    if fault.malformed_args:
        assert errors[0]["arguments"] == {MALFORMED_ARGUMENTS: '{"phone_number": "555'}
    # the model saw the error as the tool message of its call
    seen = [m for req in server.requests for m in req.body["messages"] if m["role"] == "tool"]
    assert any(expected_error in m["content"] for m in seen)
    assert rescore(events, domain="telecom", task_id=TASK.id, solo_mode=True) == result.reward


def test_the_model_factory_owns_one_connection_pool_sized_to_the_model_slots() -> None:
    import anyio

    async def clients() -> tuple[Any, Any, Any, bool]:
        factory = ModelFactory(model_slots=7)
        pool = factory.clients
        a = pool.client(Endpoint(base_url="http://127.0.0.1:9/v1", api_key="k1"))
        b = pool.client(Endpoint(base_url="http://127.0.0.1:9/v1", api_key="k2"))
        again = pool.client(Endpoint(base_url="http://127.0.0.1:9/v1", api_key="k1"))
        http = a._client
        await factory.aclose()
        return a, b, again, http.is_closed

    a, b, again, closed = anyio.run(clients)
    assert again is a  # cached by endpoint and key
    assert closed  # the factory closed the pool it owns
    assert (a.api_key, b.api_key, a.max_retries, b.max_retries) == ("k1", "k2", 0, 0)
    assert a._client is b._client  # one httpx pool shared by both session keys
    assert a._client._transport._pool._max_connections == 7


VLLM_OVERFLOW = ("This model's maximum context length is 32768 tokens. However, you requested "
                 "40000 tokens in the messages. Please reduce the length of the messages.")
AREAL_OVERFLOW = "len of prompt tokens 40000 exceeds max_total_tokens 32768"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "fault",
    [Fault(status=400, message=VLLM_OVERFLOW), Fault(status=500, message=AREAL_OVERFLOW)],
    ids=["vllm-400", "areal-proxy-500"],
)
async def test_context_overflow_is_the_policys_failure_never_retried(
    server: FakeOpenAI, fault: Fault
) -> None:
    server.inject(fault)
    results, sink = await run(spec(server))
    result = results[0]
    assert (result.status.value, result.error_type, result.reward) == ("agent_error", "ContextOverflow", 0.0)
    assert result.model_calls == 1 and len(server.requests) == 1
    assert sink.named("retry") == []


@pytest.mark.anyio
async def test_token_budget_caps_each_call_and_ends_the_episode_when_used_up(server: FakeOpenAI) -> None:
    first = await run(spec(server))
    used = first[1].named("turn")[0]["usage"]["total_tokens"]  # the first call's prompt + completion
    server.requests.clear()
    # A budget that fits the first call, leaves 5 tokens for the second, and none for a third.
    budget = used + 5
    sampling = Sampling(max_completion_tokens=100, max_total_tokens=budget)
    results, _ = await run(spec(server, sampling=sampling))
    result = results[0]
    caps = [r.body["max_tokens"] for r in server.requests]
    assert caps[0] == 100 and caps[1] == 5
    assert (result.status.value, result.error_type) == ("agent_error", "ContextOverflow")
    assert result.model_calls == len(server.requests)


@pytest.mark.anyio
async def test_extra_body_fields_go_on_the_wire(server: FakeOpenAI) -> None:
    sampling = Sampling(extra_body={"chat_template_kwargs": {"enable_thinking": True}, "top_k": 20})
    results, _ = await run(spec(server, sampling=sampling))
    assert results[0].reward == 1.0
    for req in server.requests:
        assert req.body["chat_template_kwargs"] == {"enable_thinking": True}
        assert req.body["top_k"] == 20


def thinking_first(inner: Any) -> Any:
    """A responder that thinks once, then plays `inner` on the conversation without the
    think call (so the gold script continues where it was)."""

    def respond(body: dict[str, Any]) -> Any:
        messages = body["messages"]
        think_ids = {c["id"] for m in messages for c in m.get("tool_calls") or []
                     if c["function"]["name"] == "think"}
        if not think_ids:
            return None, [("think", '{"thoughts": "check the line status first"}')]
        rest = [m for m in messages
                if not (m["role"] == "tool" and m.get("tool_call_id") in think_ids)
                and not any(c["id"] in think_ids for c in m.get("tool_calls") or [])]
        return inner({**body, "messages": rest})

    return respond


@pytest.mark.anyio
async def test_think_tool_is_areals_schema_answered_by_the_engine_and_kept_out_of_scoring(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from engine.think import THINK_REPLY

    monkeypatch.setattr(server, "responder", thinking_first(gold_agent(TASKS, solo_mode=True)))
    results, sink = await run(replace(spec(server), think_tool=True))
    result = results[0]
    assert (result.status.value, result.reward) == ("completed", 1.0)
    offered = {t["function"]["name"]: t["function"] for t in server.requests[0].body["tools"]}
    # The schema tau2's Tool builds from AReaL's `think` function (examples/tau2/agent.py).
    assert offered["think"] == {
        "name": "think",
        "description": "Use this tool to think. The thoughts will be visible in the history.\n\n"
                       "Only use this tool to think when necessary.",
        "parameters": {"properties": {"thoughts": {"title": "Thoughts", "type": "string"}},
                       "required": ["thoughts"], "title": "parameters", "type": "object"},
    }
    thinks = sink.named("think")
    assert [t["thoughts"] for t in thinks] == ["check the line status first"]
    answer = [m for m in server.requests[1].body["messages"] if m["role"] == "tool"]
    assert answer[-1]["content"] == THINK_REPLY
    assert all(e["name"] != "think" for e in sink.named("tool_call"))
    events = episode_events(sink, result)
    assert rescore(events, domain="telecom", task_id=TASK.id, solo_mode=True) == 1.0
