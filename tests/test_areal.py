"""`engine.Tau2Workflow` driven by AReaL 1.0.4's own rollout machinery: its loader
(`RemoteInfEngine._resolve_workflow`), `OpenAIProxyWorkflow` in inline and subprocess mode,
`GroupedRolloutWorkflow`, `WorkflowExecutor` and its proxy app on loopback, with the
`workflow_kwargs` of AReaL's `examples/tau2/train.py` and its dataset rows for airline,
retail and telecom. The policy and the user simulator are scripted OpenAI-compatible
servers (tests/fake_openai_server.py); see tests/areal_harness.py for the one AReaL part
that cannot run here.

Marker `areal`; skipped without `areal==1.0.4` (installed by `bash .ci/areal.sh`), a failure
when TAU2_ENGINE_REQUIRE_AREAL=1 (as that script runs it).
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import pytest

from engine import Tau2Workflow, catalog, run_agent_return_reward_sync
from engine.users.scripted import opening_line
from tests.areal_example import airline_econfig, dataset_rows, tau2_env_config, workflow_kwargs
from tests.fake_openai_server import (
    FakeOpenAI,
    Fault,
    distinct_ticket_tasks,
    gold_agent,
    non_solo_agents,
    played,
    scripted_users,
)

pytestmark = pytest.mark.areal

try:
    import areal
    from areal.api.cli_args import GenerationHyperparameters
    from areal.experimental.openai.proxy.workflow import OpenAIProxyWorkflow, _wrap_run
    from areal.infra.remote_inf_engine import GroupedRolloutWorkflow

    from tests.areal_harness import Proxy, remote_engine, running_proxy, workflow_executor
except ImportError as exc:
    if os.environ.get("TAU2_ENGINE_REQUIRE_AREAL") == "1":
        raise
    pytest.skip(f"needs areal==1.0.4 and its import chain (bash .ci/areal.sh): {exc}",
                allow_module_level=True)

WORKFLOW = "engine.Tau2Workflow"  # trainer.train(workflow=..., workflow_kwargs=...)
OVERFLOW = Fault(status=400, message="This model's maximum context length is 32768 tokens. "
                                     "However, you requested 40000 tokens.")


def test_areal_is_1_0_4() -> None:
    assert areal.__version__ == "1.0.4"


def first_rows(domain: str, count: int) -> list[dict[str, Any]]:
    """The first `count` train rows of AReaL's dataset for `domain` whose tasks open the
    call differently (the scripted policy tells tasks apart by the user's first words)."""
    rows, openings = [], set()
    for row in dataset_rows(domain):
        task = catalog.get_task(domain, row["task_id"], row["split"])
        if opening_line(task) not in openings:
            openings.add(opening_line(task))
            rows.append(row)
        if len(rows) == count:
            break
    return rows


ROWS = {domain: first_rows(domain, 2) for domain in ("airline", "retail", "telecom")}
TASKS = [catalog.get_task(d, r["task_id"], r["split"]) for d, rows in ROWS.items() for r in rows]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeOpenAI, FakeOpenAI, Proxy]]:
    with (
        FakeOpenAI(non_solo_agents(TASKS)).running() as policy,
        FakeOpenAI(scripted_users(TASKS)).running() as user,
        running_proxy(policy.base_url) as proxy,
    ):
        yield policy, user, proxy


@pytest.fixture(autouse=True)
def fresh(servers: tuple[FakeOpenAI, FakeOpenAI, Proxy]) -> None:
    for srv in servers[:2]:
        srv.requests.clear()
        srv.faults.clear()
        srv.rules.clear()


def example_kwargs(domain: str, user: FakeOpenAI) -> dict[str, Any]:
    """examples/tau2/train.py's workflow_kwargs with config_8b_airline.yaml's econfig for
    `domain` (the yaml's domain is airline; its retail and telecom runs change only that)."""
    return workflow_kwargs(airline_econfig(user.base_url, domain=domain))


def test_loader_builds_the_workflow_from_the_example_kwargs(
    servers: tuple[FakeOpenAI, FakeOpenAI, Proxy],
) -> None:
    _, user, proxy = servers
    for mode in ("inline", "subproc"):
        resolved = remote_engine(mode)._resolve_workflow(
            WORKFLOW, example_kwargs("airline", user), group_size=8, proxy_addr=proxy.addr)
        assert isinstance(resolved, GroupedRolloutWorkflow) and resolved.group_size == 8
        inner = resolved.workflow
        assert isinstance(inner, OpenAIProxyWorkflow) and inner.mode == mode
        assert isinstance(inner.agent, Tau2Workflow)
        assert inner.agent.env.domain == "airline" and inner.agent.timeout == 600.0
    gconfig = asdict(GenerationHyperparameters(n_samples=8, max_new_tokens=8192, max_tokens=32767))
    kwargs = {**example_kwargs("airline", user), "gconfig": gconfig}
    agent = remote_engine("inline")._resolve_workflow(WORKFLOW, kwargs, proxy_addr=proxy.addr).agent
    sampling = agent.sampling
    assert (sampling.max_completion_tokens, sampling.max_total_tokens) == (8192, 32767)


def run_groups(mode: str, submissions: list[tuple[str, dict[str, Any]]], group_size: int,
               servers: tuple[FakeOpenAI, FakeOpenAI, Proxy]) -> list[dict[str, Any] | None]:
    """Submit each (domain, row) as one group to AReaL's WorkflowExecutor, in order; the
    results (None: the group was rejected)."""
    _, user, proxy = servers
    engine = remote_engine(mode)
    results: list[dict[str, Any] | None] = []
    with workflow_executor(engine) as executor:
        for domain, row in submissions:
            workflow = engine._resolve_workflow(
                WORKFLOW, example_kwargs(domain, user), group_size=group_size, proxy_addr=proxy.addr)
            executor.submit(row, workflow=workflow)
            results.extend(executor.wait(count=1, timeout=600))
    return results


def rewards(trajectory: dict[str, Any]) -> list[float]:
    return sorted(i["reward"] for i in trajectory["interactions"])


@pytest.mark.parametrize("mode", ["inline", "subproc"])
def test_groups_of_every_domain_are_accepted(
    mode: str, servers: tuple[FakeOpenAI, FakeOpenAI, Proxy]
) -> None:
    policy, user, _ = servers
    submissions = [(domain, row) for domain, rows in ROWS.items() for row in rows[:1]]
    results = run_groups(mode, submissions, 2, servers)
    assert all(r is not None for r in results), results
    for result in results:
        assert result is not None and rewards(result) and set(rewards(result)) == {1.0}
    assert {r.headers["authorization"] for r in policy.requests} == {"Bearer scripted"}
    assert {r.body["model"] for r in user.requests} == {"self-hosted-Qwen2.5-72B"}


def test_a_discarded_episode_does_not_break_the_subprocess_pool(
    servers: tuple[FakeOpenAI, FakeOpenAI, Proxy],
) -> None:
    policy = servers[0]
    row = {**ROWS["telecom"][0], "timeout": 1.0}
    policy.inject(Fault(delay_s=4.0))  # one member's first call outlives its deadline
    results = run_groups("subproc", [("telecom", row), ("retail", ROWS["retail"][1]),
                                     ("telecom", ROWS["telecom"][1])], 2, servers)
    assert results[0] is None  # AReaL rejects the group whose member raised EpisodeDiscarded
    assert results[1] is not None and results[2] is not None  # ... and the pool goes on


@pytest.mark.parametrize("mode", ["inline", "subproc"])
def test_a_context_overflow_leaves_the_group_accepted_with_that_member_at_reward_0(
    mode: str, servers: tuple[FakeOpenAI, FakeOpenAI, Proxy]
) -> None:
    policy = servers[0]
    # One member's second call (one agent step played) overflows; the other member's don't.
    policy.inject_when(lambda body: OVERFLOW if played(body["messages"]) == 1 else None)
    results = run_groups(mode, [("retail", ROWS["retail"][0])], 2, servers)  # gold: several calls
    assert results[0] is not None
    got = rewards(results[0])
    assert got[0] == 0.0 and got.count(0.0) == 1  # its one recorded call, at reward 0
    assert set(got[1:]) == {1.0}  # the other member trained on as it was scored
    # the overflowing request was sent once: every recorded interaction plus that one
    assert len(policy.requests) == len(got) + 1


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _alive() -> dict[str, int]:
    """Engines and event loops still reachable (a per-call engine, loop or pool kept alive
    would show here)."""
    from engine.engine import Engine

    objects = gc.get_objects()
    return {
        # type(), not isinstance(): some objects (torch's) warn when asked for __class__
        "engines": sum(issubclass(type(o), Engine) for o in objects),
        "loops": sum(issubclass(type(o), asyncio.AbstractEventLoop) for o in objects),
    }


@pytest.mark.timeout(2400)  # 2 x 1,020 episodes on two loaded cores
def test_fds_and_memory_stay_flat_over_1000_subprocess_style_calls(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over 1,000 calls: no file descriptor, engine, event loop or Python allocation kept per
    call. RSS is printed, not asserted: a library leaves the garbage collector alone (no
    gc.freeze of the shared task data, issue 11), so with millions of long-lived objects
    (tau2, litellm) full collections are rare and the cyclic garbage of finished loops
    waits for one, raising RSS to a plateau; it is freed (tracemalloc), not kept."""
    import tracemalloc

    task = distinct_ticket_tasks("telecom")[0]
    with FakeOpenAI(gold_agent([task], solo_mode=True)).running() as policy:
        workflow = Tau2Workflow(**workflow_kwargs(tau2_env_config(solo_mode=True)))
        envs = {"OPENAI_BASE_URL": policy.base_url, "OPENAI_API_KEY": "session-key"}
        data = {"task_id": task.id, "split": "train"}
        monkeypatch.setenv("OPENAI_BASE_URL", policy.base_url)
        figures = []
        for name, call in (
            ("asyncio.run(Tau2Workflow().run) in AReaL's _wrap_run",
             lambda: _wrap_run(workflow, data, envs)),
            ("run_agent_return_reward_sync",
             lambda: run_agent_return_reward_sync({**data, "domain": "telecom", "solo_mode": True})),
        ):
            for _ in range(20):  # warm-up: imports, caches, first connections
                assert call() == 1.0
                policy.requests.clear()
            gc.collect()
            fds, rss, alive = _fds(), _rss_mb(), _alive()
            tracemalloc.start()
            for _ in range(1000):
                assert call() == 1.0
                policy.requests.clear()
            gc.collect()
            kept_mb = tracemalloc.get_traced_memory()[0] / 2**20
            tracemalloc.stop()
            figures.append((name, fds, _fds(), rss, _rss_mb(), kept_mb, alive, _alive()))
    with capsys.disabled():
        for name, fds0, fds1, rss0, rss1, kept_mb, alive0, alive1 in figures:
            print(f"\n1000 x {name}: fds {fds0} -> {fds1}, Python allocations kept {kept_mb:.2f} MB, "
                  f"engines/loops alive {alive0} -> {alive1}, RSS {rss0:.1f} -> {rss1:.1f} MB")
    for name, fds0, fds1, _, _, kept_mb, alive0, alive1 in figures:
        assert fds1 <= fds0, name  # idle keep-alive sockets of the warm-up may close meanwhile
        assert alive1 == alive0, name
        assert kept_mb < 5, name  # MB kept over 1,000 calls: nothing per call


def test_the_loader_runs_the_workflow_inline_on_the_proxys_session(
    servers: tuple[FakeOpenAI, FakeOpenAI, Proxy],
) -> None:
    """One episode the way OpenAIProxyWorkflow.arun_episode runs it, without the executor:
    its session key reaches the policy as the request's key (through the proxy)."""
    _, user, proxy = servers
    engine = remote_engine("inline")
    resolved = engine._resolve_workflow(WORKFLOW, example_kwargs("retail", user), proxy_addr=proxy.addr)

    async def episode() -> Any:
        from areal.infra import workflow_context
        from areal.infra.workflow_context import WorkflowContext

        workflow_context.set(WorkflowContext(task_id=7))
        return await resolved.arun_episode(engine, ROWS["retail"][0])

    interactions = asyncio.run(episode())
    assert interactions and all(v.reward == 1.0 for v in interactions.values())
