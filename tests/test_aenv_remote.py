"""The `aenv` backend (remote AEnvironment) and the server's tool fidelity, through the real
aenv client pointed at a local `tau2-engine serve-env` with DUMMY_INSTANCE_IP."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.prerequisites import require_aenv

require_aenv()  # before the engine's aenv modules, which need the aenv extra

from engine import catalog  # noqa: E402
from engine.config import AenvConfig, EngineConfig, plan_episodes  # noqa: E402
from engine.envs.aenv_local import SERVER_PORT  # noqa: E402
from engine.envs.aenv_protocol import strict_parameters  # noqa: E402
from engine.envs.aenv_remote import AenvBackend  # noqa: E402
from engine.envs.local import build_environment, system_prompt, tool_schemas  # noqa: E402
from engine.episode import GREETING  # noqa: E402
from engine.errors import EnvError  # noqa: E402
from engine.events import EventLog, MemorySink  # noqa: E402
from tests.aenv_helpers import CLI, Environment, serve_env  # noqa: E402
from tests.helpers import assert_event_invariants, run_specs  # noqa: E402

SOLO_TASK = plan_episodes(domain="telecom", limit=1)[0]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_env() as address:
        yield address


@pytest.fixture
def dummy(server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DUMMY_INSTANCE_IP", server)
    return server


@pytest.mark.anyio
async def test_tools_prompt_and_tool_errors_are_tau2s_own(dummy: str) -> None:
    env = Environment("tau2-env@1.0.0")
    try:
        await env.call_function("tau2_reset", {"domain": SOLO_TASK.domain,
                                               "task_id": SOLO_TASK.task_id})
        task = catalog.get_task(SOLO_TASK.domain, SOLO_TASK.task_id)
        local = build_environment(SOLO_TASK, task)
        expected = tool_schemas(local, solo_mode=True)
        listed = await env.list_tools()
        assert all(t["name"].startswith("tau2-env@1.0.0/") for t in listed)
        served = [(t["name"].split("/", 1)[1], t["description"], t["inputSchema"]) for t in listed]
        assert served == [(s.name, s.description, strict_parameters(s.parameters)) for s in expected]
        available = await env.call_function("tau2_get_available_tools", {})
        assert [(f["function"]["name"], f["function"]["parameters"]) for f in available] == [
            (s.name, s.parameters) for s in expected]
        prompt = await env.call_function("tau2_get_system_prompt", {})
        assert prompt == system_prompt(task, local.get_policy(), solo_mode=True)
        bad = await env.call_tool(expected[0].name, {"no_such_argument": 1})
        reply = json.loads(bad.content[0]["text"])
        from tau2.data_model.message import ToolCall

        reference = local.get_response(ToolCall(id="x", name=expected[0].name,
                                                arguments={"no_such_argument": 1}))
        assert reference.error and not bad.is_error
        assert reply == {"observation": reference.content, "reward": 0.0, "done": False, "step": 1,
                         "error": True}
    finally:
        await env.release()


@pytest.mark.anyio
async def test_remote_backend_runs_episodes_through_the_real_client(dummy: str) -> None:
    specs = plan_episodes(domain="telecom", limit=2)
    summary, sink = await run_specs(specs, concurrency=1, backend="aenv")
    assert summary.statuses == {"completed": 2} and summary.mean_reward == 1.0
    assert_event_invariants(sink.events)
    assert len(sink.named("env_acquire")) == len(sink.named("env_release")) == 2
    assert all(e["latency_s"] >= 0 for e in sink.named("env_release"))


@pytest.mark.anyio
async def test_release_runs_when_the_episode_is_cancelled(
    dummy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    released: list[str] = []
    original = Environment.release

    async def release(self: Environment) -> None:
        released.append(self.env_name)
        await original(self)

    monkeypatch.setattr(Environment, "release", release)
    spec = replace(SOLO_TASK, timeout_s=1.0,
                   policy=replace(SOLO_TASK.policy, latency_ms=5000))
    summary, sink = await run_specs([spec], concurrency=1, backend="aenv")
    assert summary.statuses == {"timeout": 1}
    assert released == ["tau2-env@1.0.0"]
    assert len(sink.named("env_release")) == 1


class FlakyEnvironment:
    """Fails to start `failures` times (a scheduler with no capacity), then works."""

    failures = 2
    created: list[FlakyEnvironment] = []

    def __init__(self) -> None:
        self.created.append(self)

    async def initialize(self) -> bool:
        if len(self.created) <= self.failures:
            raise RuntimeError("no capacity")
        return True


@pytest.mark.anyio
async def test_env_creation_is_retried_with_backoff_and_retry_events() -> None:
    sink = MemorySink()
    config = AenvConfig(create_attempts=3, create_backoff_s=0.01)
    backend = AenvBackend(config, EventLog("r", [sink]))
    FlakyEnvironment.created = []
    backend._environment = lambda spec: FlakyEnvironment()  # type: ignore[assignment,method-assign,return-value]
    env: Any = await backend._create(SOLO_TASK)
    assert env is FlakyEnvironment.created[-1] and len(FlakyEnvironment.created) == 3
    retries = sink.named("retry")
    assert [(e["scope"], e["attempt"]) for e in retries] == [("env_create", 0), ("env_create", 1)]
    assert all(0 < e["backoff_s"] <= 0.04 for e in retries)
    FlakyEnvironment.created = []
    FlakyEnvironment.failures = 5
    with pytest.raises(EnvError, match="after 3 attempts"):
        await backend._create(SOLO_TASK)


def test_engine_config_builds_aenv_backends() -> None:
    from engine.engine import make_backend

    cfg = EngineConfig(backend="aenv", aenv=AenvConfig(env_name="tau2-env@2.0.0", ttl="5m"))
    backend = make_backend(cfg, None)  # type: ignore[arg-type]
    assert backend.name == "aenv" and backend.config.ttl == "5m"  # type: ignore[attr-defined]
    assert make_backend(replace(cfg, backend="aenv-local"), None).name == "aenv-local"  # type: ignore[arg-type]


def official_server(task_id: str, domain: str = "telecom", *, solo: bool = True) -> Any:
    """serve-env speaking exactly the official env's protocol, its task from TAU2_*."""
    return serve_env({"TAU2_DOMAIN": domain, "TAU2_TASK_ID": task_id,
                      "TAU2_SOLO_MODE": "true" if solo else "false"}, protocol="official")


def offered_functions(address: str) -> tuple[set[str], dict[str, Any]]:
    listing = httpx.get(f"http://{address}:{SERVER_PORT}/functions/list", timeout=10).json()["data"]
    return {f["name"] for f in listing["functions"]}, listing["reward"][0]["parameters"]


def test_cli_backend_aenv_completes_a_telecom_episode_on_the_official_protocol(tmp_path: Path) -> None:
    task_id = SOLO_TASK.task_id
    events = tmp_path / "events.jsonl"
    with official_server(task_id) as address:
        functions, reward_parameters = offered_functions(address)
        assert "tau2_reset" not in functions and reward_parameters == {}
        proc = subprocess.run(
            [*CLI, "run", "--backend", "aenv", "--domain", "telecom", "--task-id", task_id,
             "--events", str(events)],
            env={**os.environ, "DUMMY_INSTANCE_IP": address}, capture_output=True, text=True,
            timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in events.read_text().splitlines()]
    (end,) = [e for e in records if e["event"] == "episode_end"]
    assert (end["status"], end["reward"]) == ("completed", 1.0), end
    calls = [e for e in records if e["event"] == "tool_call"]
    assert calls and not any(e["result"].startswith('{"observation"') for e in calls)


@pytest.mark.anyio
async def test_backend_aenv_on_the_official_protocol_telecom_and_airline_and_a_wrong_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    telecom = plan_episodes(domain="telecom", limit=2)[1]
    airline = plan_episodes(domain="airline", limit=1)[0]
    assert not airline.solo_mode
    with official_server(telecom.task_id) as first, \
            official_server(airline.task_id, "airline", solo=False) as second:
        monkeypatch.setenv("DUMMY_INSTANCE_IP", first)
        summary, sink = await run_specs([telecom], concurrency=1, backend="aenv")
        assert summary.statuses == {"completed": 1} and summary.mean_reward == 1.0
        # The server holds `telecom`'s task and cannot switch: a clear infra_error.
        other = plan_episodes(domain="telecom", limit=3)[2]
        wrong, wrong_sink = await run_specs([other], concurrency=1, backend="aenv")
        assert wrong.statuses == {"infra_error": 1}
        for end in wrong_sink.named("episode_end"):  # the engine's one retry fails alike
            assert "offers no tau2_reset" in end["error"] and other.task_id in end["error"]
        monkeypatch.setenv("DUMMY_INSTANCE_IP", second)
        summary, sink = await run_specs([airline], concurrency=1, backend="aenv")
    assert summary.statuses == {"completed": 1} and summary.mean_reward == 1.0
    turns = sink.named("turn")
    assert turns[0]["content"] == GREETING and turns[1]["role"] == "user" and turns[1]["content"]
    assert any(e["role"] == "user" and "###STOP###" in (e["content"] or "") for e in turns)
    assert_event_invariants(sink.events)
