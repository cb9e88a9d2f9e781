from __future__ import annotations

import anyio
import pytest

from engine.config import EngineConfig, PolicyConfig, plan_episodes
from engine.engine import Engine
from engine.events import EventLog, MemorySink
from tests.helpers import assert_event_invariants, run_specs

pytestmark = pytest.mark.anyio


async def test_concurrency_bounds_episodes_in_flight() -> None:
    specs = plan_episodes(domain="telecom", limit=12, policy=PolicyConfig(latency_ms=20))
    summary, sink = await run_specs(specs, concurrency=4)
    in_flight = peak = 0
    for e in sink.events:
        if e["event"] == "episode_start":
            in_flight += 1
            peak = max(peak, in_flight)
        elif e["event"] == "episode_end":
            in_flight -= 1
    assert peak == 4
    assert summary.statuses == {"completed": 12}


async def test_model_call_limiter_bounds_calls_in_flight() -> None:
    specs = plan_episodes(domain="telecom", limit=8, policy=PolicyConfig(latency_ms=30))
    sink = MemorySink()
    cfg = EngineConfig(concurrency=8, max_model_calls=2)
    engine = Engine(cfg, EventLog(cfg.run_id, [sink]))
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, engine.runtime.model_limiter.borrowed_tokens)
            await anyio.sleep(0.005)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        summary = await engine.run(specs)
        tg.cancel_scope.cancel()
    assert peak == 2
    assert summary.statuses == {"completed": 8}


async def test_results_stream_in_completion_order() -> None:
    slow = plan_episodes(domain="telecom", limit=1, policy=PolicyConfig(latency_ms=100))
    fast = plan_episodes(domain="mock", task_ids=["create_task_1"])
    cfg = EngineConfig(concurrency=2)
    engine = Engine(cfg, EventLog(cfg.run_id, []))
    async with engine.stream(slow + fast) as results:
        order = [r.domain async for r in results]
    assert order == ["mock", "telecom"]


async def test_run_emits_run_start_and_run_end_with_summary() -> None:
    specs = plan_episodes(domain="telecom", limit=4, n_samples=2)
    summary, sink = await run_specs(specs)
    [start] = sink.named("run_start")
    [end] = sink.named("run_end")
    assert start["episodes_planned"] == 8
    assert end["episodes"] == 8 and end["statuses"] == {"completed": 8} and end["mean_reward"] == 1.0
    assert end["pass_hat_k"] == {"1": 1.0, "2": 1.0}
    assert set(end["loop_lag_s"]) >= {"p50", "p99", "max"} and end["peak_rss_mb"] > 0
    assert_event_invariants(sink.events)


async def test_cancelling_a_run_closes_every_started_episode() -> None:
    specs = plan_episodes(domain="telecom", limit=20, policy=PolicyConfig(latency_ms=50))
    sink = MemorySink()
    cfg = EngineConfig(concurrency=5)
    engine = Engine(cfg, EventLog(cfg.run_id, [sink]))
    with anyio.move_on_after(0.3):
        await engine.run(specs)
    assert_event_invariants(sink.events)
    statuses = {e["status"] for e in sink.named("episode_end")}
    assert "cancelled" in statuses
    [end] = sink.named("run_end")
    assert end["interrupted"] is True
