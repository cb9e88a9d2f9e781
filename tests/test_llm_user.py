"""The LLM user simulator against a real local OpenAI-compatible HTTP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.config import (
    Endpoint,
    EngineConfig,
    EpisodeSpec,
    PolicyConfig,
    UserConfig,
    user_from_env,
)
from engine.engine import Engine
from engine.envs.local import LocalBackend
from engine.events import EventLog, MemorySink, read_events
from engine.policies.factory import ModelFactory
from engine.results import EpisodeResult
from engine.trajectory import rescore
from tests.fake_openai_server import (
    FakeOpenAI,
    Fault,
    distinct_ticket_tasks,
    gold_agent,
    scripted_user,
)
from tests.helpers import assert_event_invariants

TASK = distinct_ticket_tasks("telecom")[4]  # three user-side gold actions
USER_KEY = "user-secret"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    with (
        FakeOpenAI(gold_agent([TASK], solo_mode=False)).running() as agent,
        FakeOpenAI(scripted_user(TASK)).running() as user,
    ):
        yield agent, user


@pytest.fixture(autouse=True)
def fresh(servers: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    for srv in servers:
        srv.requests.clear()
        srv.faults.clear()


def spec(agent: FakeOpenAI, user: FakeOpenAI) -> EpisodeSpec:
    return EpisodeSpec(
        domain="telecom",
        task_id=TASK.id,
        solo_mode=False,
        policy=PolicyConfig(name="openai", endpoint=Endpoint(base_url=agent.base_url)),
        user=UserConfig(
            kind="llm",
            endpoint=Endpoint(base_url=user.base_url, api_key=USER_KEY, model="user-m", backoff_s=0.01),
        ),
    )


async def run_one(s: EpisodeSpec) -> tuple[EpisodeResult, MemorySink]:
    sink = MemorySink()
    cfg = EngineConfig(concurrency=2)
    engine = Engine(cfg, EventLog(cfg.run_id, [sink]))
    try:
        result = await engine.run_one(s)
    finally:
        await engine.aclose()
    return result, sink


@pytest.mark.anyio
async def test_llm_user_follows_tau2_guidelines_and_tools_to_reward_1(
    servers: tuple[FakeOpenAI, FakeOpenAI],
) -> None:
    from tau2.user.user_simulator import get_global_user_sim_guidelines

    agent, user = servers
    result, sink = await run_one(spec(agent, user))
    assert (result.status.value, result.reward, result.termination_reason) == ("completed", 1.0, "user_stop")
    first = user.requests[0]
    assert first.headers["authorization"] == f"Bearer {USER_KEY}"
    system = first.body["messages"][0]
    assert system["role"] == "system"
    assert get_global_user_sim_guidelines(use_tools=True) in system["content"]
    assert str(TASK.user_scenario) in system["content"]
    tools = {t["function"]["name"] for t in first.body["tools"]}
    assert {"toggle_airplane_mode", "reboot_device", "reset_apn_settings"} <= tools
    assert (first.body["model"], first.body["temperature"]) == ("user-m", 0.0)
    user_turns = [e for e in sink.named("turn") if e["role"] == "user"]
    assert len(user_turns) == len(user.requests)
    for turn in user_turns:
        assert turn["latency_s"] > 0 and turn["usage"]["total_tokens"] > 0
        assert turn["model"] == "user-m"
    assert user_turns[-1]["content"] == "###STOP###" and user_turns[-1]["stop"]
    user_tools = [e for e in sink.named("tool_call") if e["requestor"] == "user"]
    assert [e["name"] for e in user_tools] == [
        a.name for a in TASK.evaluation_criteria.actions if a.requestor == "user"
    ]
    assert not any(e["error"] for e in user_tools)
    assert rescore(sink.events, domain="telecom", task_id=TASK.id, solo_mode=False) == 1.0


@pytest.mark.anyio
async def test_llm_user_endpoint_faults_are_retried(servers: tuple[FakeOpenAI, FakeOpenAI]) -> None:
    agent, user = servers
    user.inject(Fault(status=503), Fault(status=429))
    result, sink = await run_one(spec(agent, user))
    assert result.status.value == "completed" and result.reward == 1.0
    # the user's first request, answered 503, 429, then 200: the same request three times
    assert user.requests[0].body == user.requests[1].body == user.requests[2].body
    retries = sink.named("retry")
    assert [(r["scope"], r["attempt"], r["episode_id"]) for r in retries] == [
        ("user_call", 0, result.episode_id),
        ("user_call", 1, result.episode_id),
    ]


@pytest.mark.anyio
async def test_an_empty_user_reply_is_asked_again_then_the_simulator_is_broken(
    servers: tuple[FakeOpenAI, FakeOpenAI],
) -> None:
    agent, user = servers
    user.inject(Fault(reply=("", [])))
    result, sink = await run_one(spec(agent, user))
    assert result.status.value == "completed" and result.reward == 1.0
    assert [(r["scope"], r["error_type"]) for r in sink.named("retry")] == [("user_call", "EmptyMessage")]
    user.requests.clear()
    user.inject(*[Fault(reply=(" ", []))] * 4)
    result, sink = await run_one(spec(agent, user))
    assert (result.status.value, result.error_type) == ("infra_error", "ModelError")
    assert "user simulator sent an empty message 4 times in a row" in (result.error or "")
    assert len(user.requests) == 4 and len(sink.named("retry")) == 3


def test_cli_user_llm_from_environment(
    servers: tuple[FakeOpenAI, FakeOpenAI], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    agent, user = servers
    monkeypatch.setenv("TAU2_USER_LLM", "user-env-m")
    monkeypatch.setenv("TAU2_USER_LLM_API_BASE", user.base_url)
    monkeypatch.setenv("TAU2_USER_LLM_API_KEY", "env-user-key")
    assert user_from_env().kind == "llm"
    events = tmp_path / "events.jsonl"
    code = main(
        [
            "run",
            "--domain",
            "telecom",
            "--task-id",
            TASK.id,
            "--solo",
            "off",
            "--user",
            "llm",
            "--policy",
            "openai",
            "--base-url",
            agent.base_url,
            "--api-key",
            "k",
            "--events",
            str(events),
        ]
    )
    assert code == 0
    ends: list[dict[str, Any]] = [e for e in read_events(events) if e["event"] == "episode_end"]
    assert [(e["status"], e["reward"]) for e in ends] == [("completed", 1.0)]
    assert {r.headers["authorization"] for r in user.requests} == {"Bearer env-user-key"}
    assert {r.body["model"] for r in user.requests} == {"user-env-m"}


def _cli_run(agent: FakeOpenAI, events: Path, *extra: str) -> int:
    return main(
        ["run", "--domain", "telecom", "--task-id", TASK.id, "--policy", "openai",
         "--base-url", agent.base_url, "--api-key", "k", "--events", str(events), *extra]
    )


def test_cli_real_policy_runs_non_solo_with_the_llm_user_by_default(
    servers: tuple[FakeOpenAI, FakeOpenAI], tmp_path: Path
) -> None:
    agent, user = servers
    events = tmp_path / "events.jsonl"
    code = _cli_run(agent, events, "--user-model", "openai/user-flag-m", "--user-base-url", user.base_url,
                    "--user-max-tokens", "77")
    assert code == 0
    records = list(read_events(events))
    (start,) = [e for e in records if e["event"] == "episode_start"]
    assert start["solo_mode"] is False
    ends = [e for e in records if e["event"] == "episode_end"]
    assert [(e["status"], e["reward"]) for e in ends] == [("completed", 1.0)]
    # litellm-style openai/<model> names <model>; every user call is bounded
    assert {(r.body["model"], r.body["max_tokens"]) for r in user.requests} == {("user-flag-m", 77)}
    assert {r.body["tool_choice"] for r in agent.requests} == {"auto"}


def test_cli_real_policy_without_a_user_model_says_how_to_configure_one(
    servers: tuple[FakeOpenAI, FakeOpenAI], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    agent, _ = servers
    monkeypatch.delenv("TAU2_USER_LLM", raising=False)
    assert _cli_run(agent, tmp_path / "e.jsonl") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--user-model and --user-base-url" in err[0] and "--user scripted" in err[0]
    assert agent.requests == []


def test_cli_real_policy_with_the_scripted_user_only_when_asked_and_says_so(
    servers: tuple[FakeOpenAI, FakeOpenAI], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent, user = servers
    assert _cli_run(agent, tmp_path / "e.jsonl", "--user", "scripted") == 0
    assert "real policy with the scripted user" in capsys.readouterr().out
    assert user.requests == [] and agent.requests


def test_cli_request_timeout_and_retry_flags_reach_the_policy_and_the_user(
    servers: tuple[FakeOpenAI, FakeOpenAI], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent, user = servers
    user.inject(Fault(delay_s=1.0), Fault(delay_s=1.0))
    code = _cli_run(agent, tmp_path / "e.jsonl", "--user-model", "m", "--user-base-url", user.base_url,
                    "--user-request-timeout", "0.3", "--user-max-retries", "1")
    # the user's first call timed out twice: one retry, then the episode (and so the run) failed
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[-1]] and "all 1 episodes ended infra_error" in err[0] and "2 attempts" in err[0]
    agent.inject(Fault(delay_s=1.0))
    code = _cli_run(agent, tmp_path / "f.jsonl", "--user", "scripted", "--request-timeout", "0.3",
                    "--max-retries", "0")
    assert code == 1
    assert "1 attempts" in capsys.readouterr().err


def test_env_sets_request_timeout_and_retries_of_policy_and_user(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.config import endpoint_from_env

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("TAU2_ENGINE_REQUEST_TIMEOUT", "12.5")
    monkeypatch.setenv("TAU2_ENGINE_MAX_RETRIES", "0")
    monkeypatch.setenv("TAU2_USER_LLM", "openai/u")
    monkeypatch.setenv("TAU2_USER_LLM_API_BASE", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("TAU2_USER_LLM_TIMEOUT", "30")
    monkeypatch.setenv("TAU2_USER_LLM_MAX_RETRIES", "2")
    monkeypatch.setenv("TAU2_USER_LLM_MAX_TOKENS", "64")
    policy = endpoint_from_env()
    assert policy is not None and (policy.timeout_s, policy.max_retries) == (12.5, 0)
    user_config = user_from_env()
    assert user_config.endpoint is not None
    assert (user_config.endpoint.model, user_config.endpoint.timeout_s, user_config.endpoint.max_retries,
            user_config.max_tokens) == ("u", 30.0, 2, 64)
    monkeypatch.setenv("TAU2_USER_LLM_MAX_RETRIES", "many")
    with pytest.raises(ValueError, match="TAU2_USER_LLM_MAX_RETRIES must be a number, got 'many'"):
        user_from_env()


@pytest.mark.anyio
async def test_the_engine_closes_the_pools_it_owns_when_its_block_ends(
    servers: tuple[FakeOpenAI, FakeOpenAI],
) -> None:
    sink = MemorySink()
    config = EngineConfig(concurrency=2)
    async with Engine(config, EventLog(config.run_id, [sink])) as engine:
        summary = await engine.run([spec(*servers)])
        assert summary.statuses == {"completed": 1}
        models = engine.runtime.make_model
        assert isinstance(models, ModelFactory) and isinstance(engine.backend, LocalBackend)
        [policy_http] = models.clients.http_clients
        [user_http] = engine.backend.user_clients.http_clients
        # inside the block the run did not close them: the engine may run again
        assert not policy_http.is_closed and not user_http.is_closed
        again = await engine.run([spec(*servers)])
        assert again.statuses == {"completed": 1}
    assert policy_http.is_closed and user_http.is_closed
    assert_event_invariants(sink.events)


@pytest.mark.anyio
async def test_an_engine_without_a_block_closes_its_pools_at_the_end_of_its_run(
    servers: tuple[FakeOpenAI, FakeOpenAI],
) -> None:
    config = EngineConfig(concurrency=2)
    engine = Engine(config, EventLog(config.run_id, [MemorySink()]))
    await engine.run([spec(*servers)])
    models = engine.runtime.make_model
    assert isinstance(models, ModelFactory) and isinstance(engine.backend, LocalBackend)
    assert models.clients.http_clients == [] and engine.backend.user_clients.http_clients == []
