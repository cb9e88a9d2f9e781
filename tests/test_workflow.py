"""Tau2Workflow as AReaL calls it (inline and subprocess mode), and the reward hook on an
OpenAI-compatible endpoint."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from engine import EpisodeDiscarded, Tau2Workflow, run_agent_return_reward
from engine.cli import main
from engine.config import Endpoint, PolicyConfig, spec_from_data
from engine.events import read_events
from tests.areal_example import airline_econfig, tau2_env_config, workflow_kwargs
from tests.fake_openai_server import FakeOpenAI, Fault, distinct_ticket_tasks, gold_agent, scripted_user
from tests.prerequisites import require_aenv

TASKS = distinct_ticket_tasks("telecom")
SOLO = {"domain": "telecom", "solo_mode": True}
"""An econfig for the telecom ticket tasks the gold responder plays (the first three are in
tau2's train split, AReaL's default)."""
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
        reward = await Tau2Workflow(SOLO, gconfig={"temperature": 0.7}).run(
            {"task_id": TASKS[1].id, "split": "train", "gconfig": {"top_p": 0.8}},
            base_url=server.base_url, api_key="session-abc", http_client=http_client,
        )
    assert reward == 1.0 and type(reward) is float
    assert len(sent) == len(server.requests) > 0
    for req in server.requests:
        assert req.headers["authorization"] == "Bearer session-abc"
        body = req.body
        assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.7, 0.8, 8192)


def test_subprocess_mode_reads_the_endpoint_from_the_environment(server: FakeOpenAI) -> None:
    data = {"task_id": TASKS[2].id, "split": "train"}
    code = (
        "import asyncio; from engine import Tau2Workflow; "
        f"print(asyncio.run(Tau2Workflow({SOLO!r}).run({data!r})))"
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
    data = {"task_id": TASKS[0].id, "timeout": 0.3}
    server.inject(Fault(delay_s=2.0))
    with pytest.raises(EpisodeDiscarded) as caught:
        await Tau2Workflow(SOLO).run(data, base_url=server.base_url, api_key="k")
    assert caught.value.result.status.value == "timeout"
    server.inject(Fault(delay_s=2.0))
    reward = await Tau2Workflow(SOLO, discard_failures=False).run(
        data, base_url=server.base_url, api_key="k")
    assert reward == 0.0 and type(reward) is float


@pytest.mark.anyio
async def test_request_timeout_and_retries_from_workflow_kwargs_and_from_data(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {"domain": "telecom", "task_id": TASKS[0].id, "solo_mode": True}
    server.inject(Fault(delay_s=1.0))
    with pytest.raises(EpisodeDiscarded) as caught:
        await Tau2Workflow(SOLO, request_timeout=0.3, max_retries=0).run(data, base_url=server.base_url)
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


# --- AReaL 1.0.4's examples/tau2 kwargs and rows -------------------------------------------

AIRLINE = "0"  # row {"task_id": "0", "split": "train"} of AReaL's airline dataset


@pytest.fixture(scope="module")
def airline() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    from engine import catalog

    task = catalog.get_task("airline", AIRLINE, "train")
    with (
        FakeOpenAI(gold_agent([task], solo_mode=False)).running() as agent,
        FakeOpenAI(scripted_user(task)).running() as user,
    ):
        yield agent, user


@pytest.mark.anyio
async def test_areal_example_kwargs_run_an_airline_row_with_the_llm_user_from_econfig(
    airline: tuple[FakeOpenAI, FakeOpenAI], caplog: pytest.LogCaptureFixture
) -> None:
    agent, user = airline
    agent.requests.clear()
    user.requests.clear()
    kwargs = workflow_kwargs(airline_econfig(user.base_url))
    with caplog.at_level(logging.WARNING):
        workflow = Tau2Workflow(**kwargs)
        Tau2Workflow(**kwargs)
        reward = await workflow.run({"task_id": AIRLINE, "split": "train"},
                                    base_url=agent.base_url, api_key="session-key")
    assert reward == 1.0 and type(reward) is float
    assert {r.body["max_tokens"] for r in agent.requests} == {8192}
    assert {r.body["temperature"] for r in agent.requests} == {1.0}
    # the user simulator is econfig's: model without litellm's provider prefix, its args
    assert user.requests
    for req in user.requests:
        assert req.body["model"] == "self-hosted-Qwen2.5-72B"
        assert (req.body["temperature"], req.body["max_completion_tokens"]) == (0.0, 512)
    reports = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert reports == ["Tau2Workflow: fields not used by tau2-engine (accepted, ignored): "
                       "econfig.invalid_format_penalty, econfig.turn_discount"]


def test_generation_hyperparameters_are_accepted_with_areals_token_meanings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gconfig = {  # asdict(GenerationHyperparameters(...)) of config_8b_airline.yaml
        "n_samples": 8, "max_new_tokens": 8192, "min_new_tokens": 0, "max_tokens": 32767,
        "greedy": False, "top_p": 1.0, "top_k": 100000000, "temperature": 1.0,
        "stop_token_ids": [], "ignore_eos": False, "skip_special_tokens": True, "stop": None,
        "frequency_penalty": 0.0, "lora_name": "default_lora", "use_beam_search": False,
    }
    with caplog.at_level(logging.WARNING):
        workflow = Tau2Workflow(tau2_env_config(), gconfig=gconfig, gen_args={"temperature": 0.6})
    s = workflow.sampling
    assert (s.max_completion_tokens, s.max_total_tokens, s.temperature) == (8192, 32767, 0.6)
    reported = " ".join(r.getMessage() for r in caplog.records)
    assert "gconfig.top_k" in reported and "gconfig.n_samples" in reported


@pytest.mark.anyio
async def test_row_econfig_and_gconfig_override_the_workflows(server: FakeOpenAI) -> None:
    workflow = Tau2Workflow(tau2_env_config(domain="airline"), {"temperature": 0.9})
    row = {"task_id": TASKS[0].id, "split": "train", "econfig": SOLO, "gconfig": {"temperature": 0.2}}
    assert await workflow.run(row, base_url=server.base_url) == 1.0
    assert {r.body["temperature"] for r in server.requests} == {0.2}


def test_rows_default_to_the_train_split_and_domains_without_splits_to_all_tasks(
    airline: tuple[FakeOpenAI, FakeOpenAI],
) -> None:
    endpoint = Tau2Workflow().endpoint({"base_url": "http://127.0.0.1:9/v1"})
    workflow = Tau2Workflow(airline_econfig(airline[1].base_url))
    spec = workflow.spec({"task_id": AIRLINE}, endpoint)
    assert (spec.domain, spec.split, spec.solo_mode, spec.max_steps) == ("airline", "train", False, 50)
    assert spec.user.kind == "llm"
    with pytest.raises(ValueError, match="unknown task_id '2' in domain 'airline'"):
        workflow.spec({"task_id": "2"}, endpoint)  # not in the train split
    mock = Tau2Workflow(tau2_env_config(domain="mock", solo_mode=True)).spec({"task_id": "create_task_1"},
                                                                             endpoint)
    assert mock.split is None


def test_a_real_policy_with_the_scripted_user_says_so(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.workflow

    monkeypatch.setattr(engine.workflow, "_warned_scripted_user", False)
    for name in ("TAU2_USER_LLM", "TAU2_USER_LLM_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    endpoint = Tau2Workflow().endpoint({"base_url": "http://127.0.0.1:9/v1"})
    econfig = tau2_env_config(domain="airline")  # AReaL's defaults: non-solo, no user LLM
    with pytest.raises(ValueError, match="set econfig.user_llm_base_url and econfig.user_llm"):
        Tau2Workflow(econfig).spec({"task_id": AIRLINE}, endpoint)
    with caplog.at_level(logging.WARNING, logger="engine.workflow"):
        spec = Tau2Workflow(econfig, user="scripted").spec({"task_id": AIRLINE}, endpoint)
    assert spec.user.kind == "scripted"
    assert any("SCRIPTED user" in r.getMessage() for r in caplog.records)


# --- what raises, what is trained on --------------------------------------------------------

OVERFLOW = Fault(status=400, message="This model's maximum context length is 32768 tokens. "
                                     "However, you requested 40000 tokens.")


@pytest.mark.anyio
async def test_policy_failures_score_zero_and_only_the_configured_statuses_raise(server: FakeOpenAI) -> None:
    row = {"task_id": TASKS[0].id}
    server.inject(OVERFLOW)
    assert await Tau2Workflow(SOLO).run(row, base_url=server.base_url) == 0.0
    assert len(server.requests) == 1
    server.inject(OVERFLOW)
    with pytest.raises(EpisodeDiscarded) as caught:
        await Tau2Workflow(SOLO, raise_on=("agent_error",)).run(row, base_url=server.base_url)
    assert (caught.value.result.status.value, caught.value.result.error_type) == (
        "agent_error", "ContextOverflow")
    with pytest.raises(ValueError, match="unknown raise_on status 'boom'; expected one of"):
        Tau2Workflow(raise_on=("boom",))


@pytest.mark.anyio
async def test_requests_wait_an_hour_and_are_not_retried_unless_configured(server: FakeOpenAI) -> None:
    endpoint = Tau2Workflow().endpoint({"base_url": server.base_url})
    assert endpoint is not None and (endpoint.timeout_s, endpoint.max_retries) == (3600.0, 0)
    row = {"task_id": TASKS[0].id}
    server.inject(Fault(status=500))
    with pytest.raises(EpisodeDiscarded) as caught:
        await Tau2Workflow(SOLO).run(row, base_url=server.base_url)
    assert caught.value.result.status.value == "infra_error" and len(server.requests) == 1
    server.requests.clear()
    server.inject(Fault(status=500))
    workflow = Tau2Workflow(SOLO, request_timeout=30.0, max_retries=2)
    assert await workflow.run(row, base_url=server.base_url) == 1.0
    assert server.requests[0].body == server.requests[1].body  # the one retried request


# --- pickling (AReaL's subprocess mode) -----------------------------------------------------


def _run_in_worker(workflow: Tau2Workflow, data: dict[str, Any], base_url: str) -> float:
    """What AReaL's subprocess mode runs in its pool (`_wrap_run`)."""
    os.environ["OPENAI_BASE_URL"] = base_url
    os.environ["OPENAI_API_KEY"] = "worker-key"
    return asyncio.run(workflow.run(data))


def test_a_discarded_episode_does_not_break_a_process_pool(server: FakeOpenAI) -> None:
    workflow = Tau2Workflow(SOLO)
    bad = {"task_id": TASKS[0].id, "split": "train", "timeout": 0.5}
    good = {"task_id": TASKS[1].id, "split": "train"}
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        server.inject(Fault(delay_s=3.0))
        with pytest.raises(EpisodeDiscarded) as caught:
            pool.submit(_run_in_worker, workflow, bad, server.base_url).result(timeout=180)
        assert caught.value.result.status.value == "timeout"
        assert pool.submit(_run_in_worker, workflow, good, server.base_url).result(timeout=120) == 1.0


# --- no leak per call -----------------------------------------------------------------------


def test_subprocess_style_calls_leave_no_engine_loop_or_file_descriptor(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    import psutil

    workflow = Tau2Workflow(SOLO)
    data = {"task_id": TASKS[0].id}
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    process = psutil.Process()

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    for _ in range(5):
        assert asyncio.run(workflow.run(data)) == 1.0
    gc.collect()
    before = (fds(), len(process.threads()))
    for _ in range(60):
        assert asyncio.run(workflow.run(data)) == 1.0
        server.requests.clear()
    gc.collect()
    assert (fds(), len(process.threads())) == before
    from engine.hooks import _engines

    assert len(_engines) == 0  # every loop's engine was closed with its loop


# --- backends and the per-loop concurrency cap ---------------------------------------------


@pytest.mark.anyio
async def test_a_full_per_loop_cap_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    workflow = Tau2Workflow(SOLO, concurrency=1)
    row = {"task_id": TASKS[0].id, "policy": "oracle"}
    rewards: list[float] = []

    async def one() -> None:
        rewards.append(await workflow.run(row))

    with caplog.at_level(logging.WARNING, logger="engine.hooks"):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
    assert rewards == [1.0, 1.0, 1.0]
    full = [r for r in caplog.records if "episode slots" in r.getMessage()]
    assert len(full) == 1 and "all 1 episode slots" in full[0].getMessage()


@pytest.mark.anyio
async def test_the_hook_and_the_workflow_take_their_backend_from_config_or_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_aenv()  # the repository's aenv/ folder makes a bare `import aenv` succeed
    from engine.envs.aenv_local import AenvLocalBackend
    from engine.hooks import hook_engine

    monkeypatch.setenv("TAU2_ENGINE_MAX_ENVS", "1")
    row = {"task_id": TASKS[0].id, "policy": "oracle"}
    assert await Tau2Workflow(SOLO, backend="aenv-local").run(row) == 1.0
    assert isinstance(hook_engine("aenv-local").backend, AenvLocalBackend)
    monkeypatch.setenv("TAU2_ENGINE_BACKEND", "aenv-local")
    assert await run_agent_return_reward({**row, "domain": "telecom"}) == 1.0
    assert isinstance(hook_engine().backend, AenvLocalBackend)
    with pytest.raises(ValueError, match="unknown backend 'nope'; expected one of aenv, aenv-local, local"):
        Tau2Workflow(backend="nope")
