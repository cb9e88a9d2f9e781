"""Shared test helpers: run episodes in-process with a memory sink."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from engine.config import EngineConfig, EpisodeSpec
from engine.engine import Engine
from engine.events import EventLog, MemorySink
from engine.results import RunSummary


async def run_specs(
    specs: Iterable[EpisodeSpec], *, concurrency: int = 16, **config: Any
) -> tuple[RunSummary, MemorySink]:
    sink = MemorySink()
    cfg = EngineConfig(concurrency=concurrency, **config)
    engine = Engine(cfg, EventLog(cfg.run_id, [sink]))
    try:
        summary = await engine.run(specs)
    finally:
        await engine.aclose()
    return summary, sink


def by_episode(events: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        if "episode_id" in e:
            out[e["episode_id"]].append(e)
    return out


def assert_event_invariants(events: list[dict[str, Any]]) -> None:
    """Every episode_start has exactly one episode_end; every event has the common fields;
    every episode that did not complete says why."""
    starts = [e["episode_id"] for e in events if e["event"] == "episode_start"]
    ends = [e["episode_id"] for e in events if e["event"] == "episode_end"]
    assert sorted(starts) == sorted(ends)
    assert len(set(ends)) == len(ends)
    for e in events:
        assert {"event", "timestamp", "run_id"} <= e.keys()
        assert e["timestamp"].endswith("Z")
        if e["event"] not in ("run_start", "run_end"):
            assert {"episode_id", "domain", "task_id", "sample", "attempt"} <= e.keys()
        if e["event"] == "episode_end" and e["status"] != "completed":
            assert e["error"] and e["error_type"], e


class Compass:
    """Fault-injection tally (COMPASS terms): faults injected and episodes lost per test;
    printed at the end of the test session by conftest."""

    rows: list[tuple[str, int, int]] = []

    def record(self, what: str, injected: int, lost: int) -> None:
        self.rows.append((what, injected, lost))
        assert lost == 0, f"{what}: {lost} episodes lost"
