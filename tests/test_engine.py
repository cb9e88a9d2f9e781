from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import anyio
import pytest

from engine.config import EngineConfig, EpisodeSpec, PolicyConfig, UserConfig, plan_episodes
from engine.engine import Engine
from engine.envs.local import LocalBackend
from engine.errors import ConfigError
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
    assert start["event_loop"] == "asyncio"  # the caller's loop: a library never picks one
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


BAD_SPECS = {
    "unknown-task": ({"task_id": "no-such-task"}, r"unknown task_id 'no-such-task' in domain 'telecom'"),
    "unknown-domain": ({"domain": "airlin"}, r"unknown domain 'airlin'; expected one of airline, mock"),
    "unknown-split": ({"split": "nope"}, r"unknown split 'nope'"),
    "unknown-policy": ({"policy": PolicyConfig(name="gpt")}, r"unknown policy 'gpt'"),
    "openai-without-endpoint": ({"policy": PolicyConfig(name="openai")}, r"needs a model endpoint"),
    "llm-user-without-endpoint": (
        {"solo_mode": False, "user": UserConfig(kind="llm")}, r"user 'llm' needs an endpoint"
    ),
    "max-steps": ({"max_steps": 0}, r"max_steps must be >= 1, got 0"),
}


@pytest.mark.parametrize("bad", BAD_SPECS.values(), ids=BAD_SPECS.keys())
@pytest.mark.parametrize("entry", ["run", "stream", "run_one"])
async def test_a_bad_spec_among_good_ones_is_a_config_error_before_any_episode_starts(
    bad: tuple[dict[str, Any], str], entry: str
) -> None:
    changes, message = bad
    good = plan_episodes(domain="telecom", limit=3)
    specs = [*good[:2], replace(good[2], **changes)]
    sink = MemorySink()
    cfg = EngineConfig(concurrency=4)
    engine = Engine(cfg, EventLog(cfg.run_id, [sink]))
    with pytest.raises(ConfigError, match=message):
        if entry == "run":
            await engine.run(specs)
        elif entry == "stream":
            async with engine.stream(specs) as results:
                [r async for r in results]
        else:
            await engine.run_one(specs[-1])
    await engine.aclose()
    assert sink.events == []


async def test_a_config_error_inside_an_episode_is_that_episodes_result() -> None:
    specs = plan_episodes(domain="telecom", limit=6)
    broken = specs[2].task_id
    backend = LocalBackend(anyio.CapacityLimiter(2))

    class OneMisconfigured:
        name = "local"

        @asynccontextmanager
        async def session(self, spec: EpisodeSpec) -> AsyncIterator[Any]:
            if spec.task_id == broken:
                raise ConfigError("a setting only this episode's environment refuses")
            async with backend.session(spec) as session:
                yield session

        async def aclose(self) -> None:
            await backend.aclose()

    sink = MemorySink()
    cfg = EngineConfig(concurrency=6)
    engine = Engine(cfg, EventLog(cfg.run_id, [sink]), backend=OneMisconfigured())
    summary = await engine.run(specs)
    assert summary.statuses == {"completed": 5, "infra_error": 1}
    [failed] = [r for r in summary.results if r.status.value == "infra_error"]
    assert failed.task_id == broken and failed.error_type == "ConfigError"
    assert "only this episode" in (failed.error or "")
    assert_event_invariants(sink.events)
    assert sink.events[-1]["event"] == "run_end" and sink.events[-1]["interrupted"] is False


def test_peak_rss_is_the_programs_own_not_its_forking_parents() -> None:
    import subprocess
    import sys

    ballast = bytearray(600 * 2**20)  # the parent's pages, touched
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])
    probe = "from engine.loop_lag import peak_rss_mb; print(peak_rss_mb())"
    child_mb = float(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                    check=True).stdout)
    del ballast
    assert 0 < child_mb < 300
