"""Episodes take turns at the event loop (engine.compute): a run's gate bounds the episodes
working at once, is given up while an episode waits on its model, counts as queueing for the
episode's deadline, and is left whatever ends the episode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from engine import engine as engine_module
from engine.compute import ComputeTurn
from engine.config import EngineConfig, EpisodeSpec, PolicyConfig, plan_episodes
from engine.engine import Engine
from engine.envs.local import LocalBackend, LocalSession
from engine.events import EventLog, MemorySink
from tests.helpers import by_episode

pytestmark = pytest.mark.anyio


def engine_with_gate(
    monkeypatch: pytest.MonkeyPatch, gate: int, concurrency: int, **config: Any
) -> tuple[Engine, MemorySink]:
    monkeypatch.setattr(engine_module, "COMPUTING_EPISODES", gate)
    sink = MemorySink()
    cfg = EngineConfig(concurrency=concurrency, **config)
    return Engine(cfg, EventLog(cfg.run_id, [sink])), sink


async def run_watching(engine: Engine, specs: list[EpisodeSpec]) -> tuple[Any, int, int]:
    """The run's summary, and the peaks of episodes holding a turn and of model calls."""
    gate, models = engine.runtime.compute_gate, engine.runtime.model_limiter
    assert gate is not None
    turns = calls = 0

    async def watch() -> None:
        nonlocal turns, calls
        while True:
            turns = max(turns, int(gate.borrowed_tokens))
            calls = max(calls, int(models.borrowed_tokens))
            await anyio.sleep(0.002)

    async with engine:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            summary = await engine.run(specs)
            tg.cancel_scope.cancel()
    assert gate.borrowed_tokens == 0, "an episode kept its turn after its end"
    return summary, turns, calls


async def test_the_gate_bounds_working_episodes_and_is_given_up_around_model_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine, _ = engine_with_gate(monkeypatch, gate=2, concurrency=12)
    specs = plan_episodes(domain="telecom", limit=12, policy=PolicyConfig(latency_ms=40))
    summary, turns, calls = await run_watching(engine, specs)
    assert summary.statuses == {"completed": 12}
    assert summary.mean_reward == 1.0
    assert turns == 2
    assert calls > 2  # model calls wait outside the gate: all 12 in flight at once


def interleaved_turns(events: list[dict[str, Any]]) -> int:
    """Turns during which another episode took a turn or made a tool call between an
    episode's model reply (its assistant `turn`) and the tool call that reply asked for."""
    open_turns: dict[str, int] = {}
    crossings = 0
    for i, e in enumerate(events):
        if e["event"] == "turn" and e["role"] == "assistant" and e.get("tool_calls") and not e.get("history"):
            open_turns[e["episode_id"]] = i
        elif e["event"] == "tool_call" and e["episode_id"] in open_turns:
            started = open_turns.pop(e["episode_id"])
            # (an episode's start and end are outside its turns: not counted)
            others = {x["episode_id"] for x in events[started + 1 : i] if x["event"] in ("turn", "tool_call")}
            others.discard(e["episode_id"])
            crossings += bool(others)
    return crossings


async def test_with_one_turn_at_a_time_no_episode_works_inside_anothers_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    specs = plan_episodes(domain="telecom", limit=16, policy=PolicyConfig(latency_ms=30))
    gated, gated_sink = engine_with_gate(monkeypatch, gate=1, concurrency=16)
    summary, _, _ = await run_watching(gated, specs)
    assert summary.statuses == {"completed": 16}
    # The same run without a gate (one turn per episode) does interleave their turns: the
    # Agents SDK yields to the loop inside a turn, so the check above can fail.
    ungated, ungated_sink = engine_with_gate(monkeypatch, gate=16, concurrency=16)
    summary, _, _ = await run_watching(ungated, specs)
    assert summary.statuses == {"completed": 16}
    assert interleaved_turns(ungated_sink.events) > 0
    assert interleaved_turns(gated_sink.events) == 0


class SlowToolBackend(LocalBackend):
    """Tool calls hold the episode's turn for `seconds` (an in-process tool that awaits)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(anyio.CapacityLimiter(2))
        self.seconds = seconds

    @asynccontextmanager
    async def session(self, spec: EpisodeSpec) -> AsyncIterator[LocalSession]:
        async with super().session(spec) as session:
            original = session.call_tool

            async def call_tool(call: Any) -> Any:
                await anyio.sleep(self.seconds)
                return await original(call)

            session.call_tool = call_tool  # type: ignore[method-assign]
            yield session


async def test_waiting_for_a_turn_is_queueing_not_the_episodes_own_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One turn at a time, four episodes whose tool calls hold it 0.1 s each (telecom's first
    # task: four tool calls): each waits ~1.2 s for turns, beyond its own 1 s timeout.
    monkeypatch.setattr(engine_module, "COMPUTING_EPISODES", 1)
    sink = MemorySink()
    cfg = EngineConfig(concurrency=4)
    specs = [
        EpisodeSpec(
            domain="telecom", task_id=spec.task_id, sample=i, solo_mode=True, timeout_s=1.0,
            policy=PolicyConfig(latency_ms=1),
        )
        for i, spec in enumerate(plan_episodes(domain="telecom", limit=1) * 4)
    ]
    engine = Engine(cfg, EventLog(cfg.run_id, [sink]), backend=SlowToolBackend(0.1))
    async with engine:
        summary = await engine.run(specs)
    assert summary.statuses == {"completed": 4}
    ends = sink.named("episode_end")
    assert max(e["queue_wait_s"] for e in ends) > 0.5
    assert engine.runtime.compute_gate is not None and engine.runtime.compute_gate.borrowed_tokens == 0


async def test_every_way_an_episode_ends_leaves_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, sink = engine_with_gate(monkeypatch, gate=2, concurrency=8)
    ok = plan_episodes(domain="telecom", limit=2, policy=PolicyConfig(latency_ms=10))
    budget = [
        EpisodeSpec(domain="telecom", task_id=ok[0].task_id, sample=5, solo_mode=True, max_steps=2,
                    policy=PolicyConfig(latency_ms=10))
    ]
    deadline = [
        EpisodeSpec(domain="telecom", task_id=ok[1].task_id, sample=6, solo_mode=True, timeout_s=0.05,
                    policy=PolicyConfig(latency_ms=200))
    ]
    summary, _, _ = await run_watching(engine, ok + budget + deadline)
    assert summary.statuses == {"completed": 2, "max_steps": 1, "timeout": 1}
    assert len(by_episode(sink.events)) == 4


async def test_a_cancelled_run_leaves_the_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, _ = engine_with_gate(monkeypatch, gate=2, concurrency=10)
    specs = plan_episodes(domain="telecom", limit=10, policy=PolicyConfig(latency_ms=50))
    async with engine:
        with anyio.move_on_after(0.12):
            await engine.run(specs)
    assert engine.runtime.compute_gate is not None
    assert engine.runtime.compute_gate.borrowed_tokens == 0


async def test_a_turn_given_up_for_a_wait_is_taken_back_after_it_not_after_an_error() -> None:
    gate = anyio.CapacityLimiter(1)
    turn = ComputeTurn(gate)
    await turn.enter()
    await turn.enter()  # entering twice holds one turn
    assert gate.borrowed_tokens == 1
    async with turn.waiting():
        assert gate.borrowed_tokens == 0 and not turn.held
    assert turn.held and gate.borrowed_tokens == 1
    async with turn.waiting(False):  # work on the loop (an in-process tool) keeps the turn
        assert turn.held and gate.borrowed_tokens == 1
    assert turn.held and gate.borrowed_tokens == 1
    with pytest.raises(RuntimeError):
        async with turn.waiting():
            raise RuntimeError("the model call failed")
    assert not turn.held and gate.borrowed_tokens == 0
    turn.leave()  # leaving when not holding is harmless
    assert gate.borrowed_tokens == 0
    # two tasks of one episode (parallel tool calls) entering at once hold one turn
    async with anyio.create_task_group() as tg:
        tg.start_soon(turn.enter)
        tg.start_soon(turn.enter)
    assert turn.held and gate.borrowed_tokens == 1
    turn.leave()
    assert gate.borrowed_tokens == 0
    # without a gate (an episode outside an engine) every step is a no-op
    free = ComputeTurn()
    await free.enter()
    async with free.waiting():
        pass
    assert not free.held
