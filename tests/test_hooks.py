from __future__ import annotations

import asyncio
import threading

import pytest

from engine import run_agent_return_reward, run_agent_return_reward_sync

TELECOM = "[mobile_data_issue]airplane_mode_on|data_mode_off[PERSONA:None]"


@pytest.mark.anyio
async def test_async_hook_returns_python_float_one_for_oracle() -> None:
    reward = await run_agent_return_reward({"domain": "telecom", "task_id": TELECOM, "policy": "oracle"})
    assert type(reward) is float and reward == 1.0


def test_sync_hook_returns_one_from_plain_code() -> None:
    reward = run_agent_return_reward_sync({"domain": "telecom", "task_id": TELECOM, "policy": "oracle"})
    assert type(reward) is float and reward == 1.0


def test_sync_hook_works_from_a_thread_while_another_loop_runs() -> None:
    results: list[float] = []

    async def busy_loop() -> None:
        finished = asyncio.Event()
        loop = asyncio.get_running_loop()

        def work() -> None:
            results.append(run_agent_return_reward_sync({"task_id": TELECOM}))
            loop.call_soon_threadsafe(finished.set)

        threading.Thread(target=work).start()
        await finished.wait()

    asyncio.run(busy_loop())
    assert results == [1.0]


def test_sync_hook_inside_a_running_loop_does_not_break_it() -> None:
    async def caller() -> float:
        return run_agent_return_reward_sync({"task_id": TELECOM})

    assert asyncio.run(caller()) == 1.0


@pytest.mark.anyio
async def test_hook_rejects_unknown_domain_with_valid_choices() -> None:
    with pytest.raises(
        ValueError, match="unknown domain 'airlin'; expected one of airline, mock, retail, telecom"
    ):
        await run_agent_return_reward({"domain": "airlin", "task_id": "0"})


@pytest.mark.anyio
async def test_openai_policy_without_endpoint_is_rejected_before_any_episode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match="policy 'openai' needs a model endpoint"):
        await run_agent_return_reward({"domain": "mock", "task_id": "create_task_1", "policy": "openai"})


@pytest.mark.anyio
async def test_workflow_runs_an_offline_policy_without_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine import Tau2Workflow

    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    reward = await Tau2Workflow().run({"domain": "telecom", "task_id": TELECOM, "policy": "oracle"})
    assert type(reward) is float and reward == 1.0
