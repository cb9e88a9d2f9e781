"""Fault injection: environment crashes, model failures, cancellation at random points and
slow sinks. Whatever is injected, every started episode has exactly one end record, no
environment stays open, and the counts add up (episodes lost must be 0)."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from openai.types.responses import ResponseFunctionToolCall

from engine import sdk
from engine.config import EngineConfig, EpisodeSpec, PolicyConfig, plan_episodes
from engine.engine import Engine
from engine.envs.local import LocalBackend, LocalSession
from engine.errors import EnvError, ModelError
from engine.events import EventLog, JsonlFileSink, MemorySink, read_events
from engine.policies.factory import make_model
from tests.helpers import Compass, assert_event_invariants

pytestmark = pytest.mark.anyio


class FaultyBackend:
    """The real local backend, with seeded crashes injected into environment operations."""

    name = "local"

    def __init__(
        self,
        inner: LocalBackend,
        crash_rate: float,
        seed: int,
        sites: tuple[str, ...] = ("open", "tool call"),
    ) -> None:
        self.inner = inner
        self.crash_rate = crash_rate
        self.sites = sites
        self.rng = random.Random(seed)
        self.open_sessions = 0
        self.injected = 0

    def _maybe_crash(self, where: str) -> None:
        if where in self.sites and self.rng.random() < self.crash_rate:
            self.injected += 1
            raise EnvError(f"injected environment crash in {where}")

    @asynccontextmanager
    async def session(self, spec: EpisodeSpec) -> AsyncIterator[LocalSession]:
        self._maybe_crash("open")
        async with self.inner.session(spec) as session:
            self.open_sessions += 1
            original = session.call_tool

            async def call_tool(call: Any) -> Any:
                self._maybe_crash("tool call")
                return await original(call)

            session.call_tool = call_tool  # type: ignore[method-assign]
            try:
                yield session
            finally:
                self.open_sessions -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


class FlakyModelFactory:
    """Real policy models whose calls fail with a seeded ModelError rate."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.rng = random.Random(seed)
        self.injected = 0

    def __call__(self, spec: EpisodeSpec, task: Any) -> Any:
        model = make_model(spec, task)
        original = model.get_response

        async def get_response(*args: Any, **kwargs: Any) -> Any:
            if self.rng.random() < self.rate:
                self.injected += 1
                raise ModelError("injected endpoint failure after retries")
            return await original(*args, **kwargs)

        model.get_response = get_response  # type: ignore[method-assign]
        return model


def _engine(
    sink: Any, *, crash_rate: float = 0.0, model_rate: float = 0.0, seed: int = 0, concurrency: int = 16
) -> tuple[Engine, FaultyBackend, FlakyModelFactory]:
    config = EngineConfig(concurrency=concurrency)
    cpu = anyio.CapacityLimiter(2)
    backend = FaultyBackend(LocalBackend(cpu), crash_rate, seed)
    models = FlakyModelFactory(model_rate, seed + 1)
    engine = Engine(config, EventLog(config.run_id, [sink]), backend=backend, model_factory=models)
    return engine, backend, models


def _lost(events: list[dict[str, Any]], planned: list[EpisodeSpec]) -> int:
    """Planned episodes with no final end record."""
    ended = {(e["task_id"], e["sample"]) for e in events if e["event"] == "episode_end"}
    return sum((s.task_id, s.sample) not in ended for s in planned)


async def test_environment_crashes_end_infra_error_and_are_retried_on_a_fresh_env(compass: Compass) -> None:
    sink = MemorySink()
    specs = plan_episodes(domain="telecom", limit=40)
    engine, backend, _ = _engine(sink, crash_rate=0.05, seed=7)
    summary = await engine.run(specs)
    events = sink.events
    assert_event_invariants(events)
    assert backend.injected > 0 and backend.open_sessions == 0
    assert _lost(events, specs) == 0 and summary.episodes == 40
    retries = [e for e in events if e["event"] == "retry"]
    first_failures = [
        e for e in sink.named("episode_end") if e["status"] == "infra_error" and e["attempt"] == 0
    ]
    assert len(retries) == len(first_failures) > 0
    assert all(e["error_type"] == "EnvError" for e in first_failures)
    assert sum(summary.statuses.values()) == 40
    assert summary.attempts == 40 + len(retries)
    compass.record("environment crashes", backend.injected, _lost(events, specs))


async def test_model_failures_end_infra_error_never_agent_error(compass: Compass) -> None:
    sink = MemorySink()
    specs = plan_episodes(domain="airline", limit=10)
    engine, _, models = _engine(sink, model_rate=0.1, seed=3)
    summary = await engine.run(specs)
    assert_event_invariants(sink.events)
    assert models.injected > 0
    statuses = Counter(e["status"] for e in sink.named("episode_end"))
    assert set(statuses) <= {"completed", "infra_error"} and statuses["infra_error"] > 0
    assert all(
        e["error_type"] == "ModelError" for e in sink.named("episode_end") if e["status"] == "infra_error"
    )
    assert _lost(sink.events, specs) == 0 and summary.episodes == 10
    compass.record("model endpoint failures", models.injected, _lost(sink.events, specs))


@pytest.mark.parametrize("seed", range(6))
async def test_cancellation_at_a_random_point_closes_every_episode_and_environment(
    seed: int, compass: Compass
) -> None:
    sink = MemorySink()
    specs = plan_episodes(
        domain="telecom", limit=24, policy=PolicyConfig(latency_ms=random.Random(seed).uniform(5, 40))
    )
    engine, backend, _ = _engine(sink, crash_rate=0.02, seed=seed, concurrency=8)
    with anyio.move_on_after(random.Random(seed).uniform(0.05, 0.6)):
        await engine.run(specs)
    assert_event_invariants(sink.events)
    assert backend.open_sessions == 0
    [run_end] = sink.named("run_end")
    ends = sink.named("episode_end")
    assert sum(run_end["statuses"].values()) == len({(e["task_id"], e["sample"]) for e in ends})
    started = {(e["task_id"], e["sample"]) for e in sink.named("episode_start")}
    ended = {(e["task_id"], e["sample"]) for e in ends}
    compass.record(
        f"cancellation at a random point (seed {seed})", 1 + backend.injected, len(started - ended)
    )


class SlowFileSink(JsonlFileSink):
    """A file sink on a slow disk: every batch write takes 20 ms."""

    def _write_batch(self) -> None:
        time.sleep(0.02)
        super()._write_batch()


async def test_slow_sink_loses_nothing_and_never_stalls_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "slow.jsonl"
    sink = SlowFileSink(path)
    config = EngineConfig(concurrency=32)
    events = EventLog(config.run_id, [sink])
    engine = Engine(config, events)
    summary = await engine.run(plan_episodes(domain="telecom", limit=40))
    events.close()
    written = list(read_events(path))
    assert len(written) == sum(events.counts.values())
    assert_event_invariants(written)
    assert summary.statuses == {"completed": 40}
    [run_end] = [e for e in written if e["event"] == "run_end"]
    # The writer thread sleeps 20 ms per batch; had it run on the loop, lag would show it.
    assert run_end["loop_lag_s"]["samples"] > 0


class _Unserialisable:
    """A value whose serialisation raises (not TypeError): a buggy pydantic model."""

    def model_dump(self, mode: str = "python") -> object:
        raise ValueError("injected: cannot serialise")


class PoisonedFileSink(JsonlFileSink):
    """A file sink that receives an unserialisable value in every 5th tool_call event."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.seen = 0
        self.injected = 0

    def write(self, event: dict[str, Any]) -> None:
        if event["event"] == "tool_call":
            self.seen += 1
            if self.seen % 5 == 0:
                self.injected += 1
                event = {**event, "result": _Unserialisable()}
        super().write(event)


async def test_unserialisable_events_become_event_error_records_and_the_writer_lives_on(
    tmp_path: Path, compass: Compass
) -> None:
    path = tmp_path / "poisoned.jsonl"
    sink = PoisonedFileSink(path)
    config = EngineConfig(concurrency=16)
    events = EventLog(config.run_id, [sink])
    specs = plan_episodes(domain="telecom", limit=40)
    summary = await Engine(config, events).run(specs)
    report = events.close()
    written = list(read_events(path))
    assert sink.injected > 0 and report is not None
    assert (report.failed, report.error) == (sink.injected, None)
    assert report.written == len(written) - sink.injected
    assert len(written) == sum(events.counts.values())
    errors = [e for e in written if e["event"] == "event_error"]
    assert len(errors) == sink.injected
    assert {(e["failed_event"], e["error_type"]) for e in errors} == {("tool_call", "ValueError")}
    assert all(e["episode_id"] and e["run_id"] == config.run_id for e in errors)
    assert_event_invariants([e for e in written if e["event"] != "event_error"])
    assert summary.statuses == {"completed": 40} and written[-1]["event"] == "run_end"
    compass.record("unserialisable events", sink.injected, _lost(written, specs))


async def test_a_disk_slower_than_the_run_applies_backpressure_and_loses_nothing(
    tmp_path: Path, compass: Compass
) -> None:
    path = tmp_path / "slow.jsonl"
    sink = SlowFileSink(path, max_pending=16)
    config = EngineConfig(concurrency=32)
    events = EventLog(config.run_id, [sink])
    specs = plan_episodes(domain="telecom", limit=40)
    summary = await Engine(config, events).run(specs)
    report = events.close()
    written = list(read_events(path))
    assert report is not None and report.waits > 0 and report.peak_pending <= 17
    assert report.written == len(written) == sum(events.counts.values())
    assert_event_invariants(written)
    assert summary.statuses == {"completed": 40}
    compass.record(f"slow disk, queue bound 16 ({report.waits} waits)", report.waits, _lost(written, specs))


async def test_env_crash_after_real_model_requests_is_not_replayed() -> None:
    from engine.config import Endpoint
    from engine.policies.oracle import oracle_model

    sink = MemorySink()
    endpoint = Endpoint(base_url="http://127.0.0.1:9/v1")
    specs = plan_episodes(
        domain="telecom", limit=6, solo_mode=True, policy=PolicyConfig(name="openai", endpoint=endpoint)
    )
    config = EngineConfig(concurrency=6)
    backend = FaultyBackend(LocalBackend(anyio.CapacityLimiter(2)), 1.0, 0, sites=("tool call",))
    engine = Engine(
        config,
        EventLog(config.run_id, [sink]),
        backend=backend,
        model_factory=lambda spec, task: oracle_model(task, solo_mode=spec.solo_mode),
    )
    summary = await engine.run(specs)
    assert summary.statuses == {"infra_error": 6}
    assert sink.named("retry") == [] and summary.attempts == 6
    assert all(r.model_calls == 1 for r in summary.results)


async def test_endpoint_fault_storm_loses_no_episode(compass: Compass) -> None:
    """5xx, 429, timeouts and latency spikes from a real HTTP endpoint, mixed at random."""
    from engine.config import Endpoint
    from tests.fake_openai_server import FakeOpenAI, Fault, distinct_ticket_tasks, gold_agent

    tasks = distinct_ticket_tasks("telecom")
    rng = random.Random(11)
    menu = [
        Fault(status=500),
        Fault(status=503),
        Fault(status=429),
        Fault(delay_s=0.6),
        Fault(delay_s=0.15),
        Fault(),
    ]
    faults = [rng.choice(menu) for _ in range(60)]
    with FakeOpenAI(gold_agent(tasks, solo_mode=True)).running() as server:
        server.inject(*faults)
        endpoint = Endpoint(
            base_url=server.base_url, api_key="k", timeout_s=0.4, max_retries=3, backoff_s=0.01
        )
        specs = [
            EpisodeSpec(
                domain="telecom",
                task_id=t.id,
                sample=k,
                policy=PolicyConfig(name="openai", endpoint=endpoint),
            )
            for t in tasks
            for k in range(4)
        ]
        sink = MemorySink()
        config = EngineConfig(concurrency=10)
        engine = Engine(config, EventLog(config.run_id, [sink]))
        summary = await engine.run(specs)
    assert_event_invariants(sink.events)
    injected = sum(f != Fault() for f in faults)
    statuses = Counter(e["status"] for e in sink.named("episode_end"))
    assert set(statuses) <= {"completed", "infra_error"} and statuses["completed"] > 0
    assert sink.named("retry") and all(r["scope"] == "model_call" for r in sink.named("retry"))
    assert _lost(sink.events, specs) == 0 and summary.episodes == len(specs)
    assert all(r.reward == 1.0 for r in summary.results if r.status.value == "completed")
    compass.record("endpoint 5xx/429/timeouts/latency spikes", injected, _lost(sink.events, specs))


async def test_a_timeout_raised_inside_the_episode_is_infra_error_not_the_deadline() -> None:
    sink = MemorySink()
    config = EngineConfig(concurrency=2)
    backend = LocalBackend(anyio.CapacityLimiter(2))

    class TimingOut:
        name = "local"

        @asynccontextmanager
        async def session(self, spec: EpisodeSpec) -> AsyncIterator[Any]:
            async with backend.session(spec) as session:

                async def call_tool(call: Any) -> Any:
                    raise TimeoutError("a tool's own timeout")

                session.call_tool = call_tool
                yield session

        async def aclose(self) -> None:
            return None

    engine = Engine(config, EventLog(config.run_id, [sink]), backend=TimingOut())
    spec = plan_episodes(domain="telecom", limit=1, timeout_s=30)[0]
    summary = await engine.run([spec])
    [result] = summary.results
    assert result.status.value == "infra_error" and result.error_type == "TimeoutError"


class TwoToolCalls(sdk.WholeResponseModel):
    """A model whose every message calls the first two tools of its list at once."""

    async def get_response(
        self, system_instructions: str | None, input: Any, model_settings: sdk.ModelSettings,
        tools: list[sdk.Tool], output_schema: Any, handoffs: list[Any], tracing: Any, **kwargs: Any,
    ) -> sdk.ModelResponse:
        calls = [
            ResponseFunctionToolCall(
                type="function_call", call_id=f"call_{n}", name=tool.name, arguments=json.dumps({}),
                id=f"fc_{n}", status="completed",
            )
            for n, tool in enumerate(tools[:2])
        ]
        return sdk.ModelResponse(output=calls, usage=sdk.Usage(requests=1), response_id=None)


async def test_a_failing_tool_call_ends_its_sibling_before_the_episode_ends() -> None:
    """The first of two calls of one message raises (out of the SDK's Runner); the second,
    slow, must not act on the released environment nor emit after episode_end."""
    sink = MemorySink()
    config = EngineConfig(concurrency=2)
    backend = LocalBackend(anyio.CapacityLimiter(2))
    gate = anyio.Event()
    second_call_over = anyio.Event()
    after_release: list[str] = []

    class FirstCallFails:
        name = "local"

        @asynccontextmanager
        async def session(self, spec: EpisodeSpec) -> AsyncIterator[Any]:
            async with backend.session(spec) as session:
                released = False
                original = session.call_tool
                calls = 0

                async def call_tool(call: Any) -> Any:
                    nonlocal calls
                    calls += 1
                    if released:
                        after_release.append(call.name)
                    if calls == 1:
                        raise RuntimeError("the environment failed this call")
                    try:
                        await gate.wait()  # slow: still running when the first has failed
                        if released:
                            after_release.append(call.name)
                        return await original(call)
                    finally:
                        second_call_over.set()

                session.call_tool = call_tool
                try:
                    yield session
                finally:
                    released = True

        async def aclose(self) -> None:
            await backend.aclose()

    engine = Engine(
        config,
        EventLog(config.run_id, [sink]),
        backend=FirstCallFails(),
        model_factory=lambda spec, task: TwoToolCalls(),
    )
    summary = await engine.run(plan_episodes(domain="telecom", limit=1, solo_mode=True))
    gate.set()  # whatever still waits may go on now
    with anyio.fail_after(10):
        await second_call_over.wait()
    [result] = summary.results
    assert result.status.value == "infra_error" and result.error_type == "RuntimeError"
    assert after_release == []
    names = [e["event"] for e in sink.events]
    assert names.index("episode_end") == len(names) - 2 and names[-1] == "run_end", names
    assert_event_invariants(sink.events)
