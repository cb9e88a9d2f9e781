"""Tau2Workflow as AReaL calls it (inline and subprocess mode), and the reward hook on an
OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine import EpisodeDiscarded, Tau2Workflow, run_agent_return_reward
from engine.cli import main
from engine.config import Endpoint, PolicyConfig, spec_from_data
from engine.events import read_events
from tests.fake_openai_server import FakeOpenAI, Fault, distinct_ticket_tasks, gold_agent

TASKS = distinct_ticket_tasks("telecom")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(gold_agent(TASKS, solo_mode=True)).running() as srv:
        yield srv


@pytest.fixture(autouse=True)
def fresh(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    server.requests.clear()
    server.faults.clear()
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.anyio
async def test_inline_mode_uses_base_url_session_key_and_http_client(server: FakeOpenAI) -> None:
    sent: list[httpx.Request] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as http_client:
        reward = await Tau2Workflow(gconfig={"temperature": 0.7}).run(
            {"domain": "telecom", "task_id": TASKS[1].id, "solo_mode": True, "gconfig": {"top_p": 0.8}},
            base_url=server.base_url, api_key="session-abc", http_client=http_client,
        )
    assert reward == 1.0 and type(reward) is float
    assert len(sent) == len(server.requests) > 0
    for req in server.requests:
        assert req.headers["authorization"] == "Bearer session-abc"
        assert (req.body["temperature"], req.body["top_p"], req.body["max_tokens"]) == (
            0.7, 0.8, 8192)


def test_subprocess_mode_reads_the_endpoint_from_the_environment(server: FakeOpenAI) -> None:
    data = {"domain": "telecom", "task_id": TASKS[2].id, "solo_mode": True}
    code = (
        "import asyncio; from engine import Tau2Workflow; "
        f"print(asyncio.run(Tau2Workflow().run({data!r})))"
    )
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sub-key",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1.0"
    assert server.requests
    assert {r.headers["authorization"] for r in server.requests} == {"Bearer sub-key"}


@pytest.mark.anyio
async def test_timeouts_are_discarded_by_default_or_scored_zero(server: FakeOpenAI) -> None:
    data = {"domain": "telecom", "task_id": TASKS[0].id, "solo_mode": True, "timeout": 0.3}
    server.inject(Fault(delay_s=2.0))
    with pytest.raises(EpisodeDiscarded) as caught:
        await Tau2Workflow().run(data, base_url=server.base_url, api_key="k")
    assert caught.value.result.status.value == "timeout"
    server.inject(Fault(delay_s=2.0))
    reward = await Tau2Workflow(discard_failures=False).run(
        data, base_url=server.base_url, api_key="k")
    assert reward == 0.0 and type(reward) is float


@pytest.mark.anyio
async def test_request_timeout_and_retries_from_workflow_kwargs_and_from_data(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {"domain": "telecom", "task_id": TASKS[0].id, "solo_mode": True}
    server.inject(Fault(delay_s=1.0))
    with pytest.raises(EpisodeDiscarded) as caught:
        await Tau2Workflow(request_timeout=0.3, max_retries=0).run(data, base_url=server.base_url)
    result = caught.value.result
    assert (result.status.value, result.error_type) == ("infra_error", "ModelError")
    assert "after 1 attempts: APITimeoutError" in (result.error or "")
    # the hook: `data` keys
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    server.requests.clear()
    server.inject(Fault(delay_s=1.0), Fault(delay_s=1.0))
    with pytest.raises(EpisodeDiscarded, match="after 2 attempts"):
        await run_agent_return_reward({**data, "request_timeout": 0.3, "max_retries": 1})
    assert len(server.requests) == 2
    with pytest.raises(ValueError, match="max_retries must be >= 0, got -1"):
        await run_agent_return_reward({**data, "max_retries": -1})


def test_a_real_policy_runs_non_solo_with_the_llm_user_unless_data_asks_for_solo(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = PolicyConfig(name="openai", endpoint=Endpoint(base_url=server.base_url))
    data = {"domain": "telecom", "task_id": TASKS[0].id}
    monkeypatch.delenv("TAU2_USER_LLM", raising=False)
    with pytest.raises(ValueError, match="TAU2_USER_LLM and TAU2_USER_LLM_API_BASE"):
        spec_from_data(data, default_policy=policy)
    monkeypatch.setenv("TAU2_USER_LLM", "openai/user-m")
    monkeypatch.setenv("TAU2_USER_LLM_API_BASE", server.base_url)
    spec = spec_from_data(data, default_policy=policy)
    assert spec.solo_mode is False and spec.user.kind == "llm"
    assert spec.user.endpoint is not None and spec.user.endpoint.model == "user-m"
    assert spec_from_data({**data, "solo_mode": True}, default_policy=policy).solo_mode is True
    assert spec_from_data({**data, "policy": "oracle"}, default_policy=policy).solo_mode is True


@pytest.mark.anyio
async def test_workflow_without_an_endpoint_says_how_to_configure_one() -> None:
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        await Tau2Workflow().run({"domain": "telecom", "task_id": TASKS[0].id})


@pytest.mark.anyio
async def test_reward_hook_uses_the_endpoint_when_openai_base_url_is_set(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "hook-key")
    data = {"domain": "telecom", "task_id": TASKS[3].id, "solo_mode": True}
    assert await run_agent_return_reward(data) == 1.0
    assert {r.headers["authorization"] for r in server.requests} == {"Bearer hook-key"}
    server.requests.clear()
    data = {"domain": "telecom", "task_id": TASKS[3].id, "policy": "oracle"}
    assert await run_agent_return_reward(data) == 1.0
    assert server.requests == []


def test_cli_openai_policy_sends_key_model_and_sampling(server: FakeOpenAI, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    argv = ["run", "--domain", "telecom", "--solo", "on", "--policy", "openai", "--base-url", server.base_url,
            "--api-key", "cli-key", "--model", "cli-model", "--temperature", "0.5",
            "--top-p", "0.95", "--max-tokens", "1024", "--seed", "5", "--n-samples", "2",
            "--events", str(events)]
    for task in TASKS:
        argv += ["--task-id", task.id]
    assert main(argv) == 0
    ends = [e for e in read_events(events) if e["event"] == "episode_end"]
    assert len(ends) == 2 * len(TASKS)
    assert {(e["status"], e["reward"], e["policy"]) for e in ends} == {(
        "completed", 1.0, "openai")}
    seeds = set()
    for req in server.requests:
        assert req.headers["authorization"] == "Bearer cli-key"
        body = req.body
        assert (body["model"], body["temperature"], body["top_p"]) == ("cli-model", 0.5, 0.95)
        assert body["max_tokens"] == 1024
        seeds.add(body["seed"])
    assert seeds == {5, 6}  # --seed 5: sample k sends seed 5 + k, so samples differ
    assert json.loads(events.read_text().splitlines()[0])["event"] == "run_start"
