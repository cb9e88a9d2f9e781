"""Writes realistic events files following docs/events.md, for the analysis tests.

Imported by the other ``test_analysis_*`` modules; its own tests pin that the files
it writes hold what the schema promises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

T0 = datetime(2026, 11, 25, 7, 30, 0, tzinfo=UTC)
GREETING = "Hi! How can I help you today?"
STOP = "###STOP###"
EXCLUDED = ("infra_error", "timeout", "cancelled")


def stamp(seconds: float) -> str:
    """ISO-8601 UTC with microseconds and a Z, as structlog's TimeStamper writes it."""
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, kw_only=True)
class Call:
    """One tool call and its result."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    result: str = '{"ok": true}'
    error: bool = False
    latency_s: float = 0.01
    requestor: str = "assistant"


@dataclass(frozen=True, kw_only=True)
class Msg:
    """One message (a `turn` event) with the tool calls it requests."""

    role: str
    content: str | None = None
    calls: tuple[Call, ...] = ()
    latency_s: float = 0.5
    usage: dict[str, int] | None = None
    model: str | None = None
    stop: bool = False
    history: bool | None = None
    """Replayed from the task's initial history (the engine's `history` field); None omits it."""


@dataclass(frozen=True, kw_only=True)
class Retry:
    error_type: str
    scope: str = "model_call"
    backoff_s: float = 0.5


@dataclass(frozen=True, kw_only=True)
class Episode:
    """One episode attempt with a known outcome."""

    task_id: str
    sample: int
    domain: str = "mock"
    status: str = "completed"
    reward: float = 1.0
    messages: tuple[Msg, ...] | None = None
    calls: tuple[Call, ...] = ()
    start_s: float = 0.0
    duration_s: float = 2.0
    attempt: int = 0
    error_type: str | None = None
    error: str | None = None
    termination_reason: str | None = None
    reward_info: dict[str, Any] | None = None
    retries: tuple[Retry, ...] = ()
    finished: bool = True
    seed: int = 7
    policy: str = "oracle"
    episode_id: str | None = None


def default_messages(calls: Sequence[Call], *, model: str = "agent-model") -> tuple[Msg, ...]:
    """Greeting, user request, one assistant message per tool call, a reply, the user stop."""
    usage = {"input_tokens": 100, "output_tokens": 20, "total_tokens": 120}
    user_usage = {"input_tokens": 50, "output_tokens": 10, "total_tokens": 60}
    msgs = [
        Msg(role="assistant", content=GREETING, latency_s=0.0),
        Msg(role="user", content="Please help me.", usage=user_usage, model="user-model"),
    ]
    msgs += [Msg(role="assistant", calls=(c,), usage=usage, model=model) for c in calls]
    msgs.append(Msg(role="assistant", content="Done.", usage=usage, model=model))
    msgs.append(Msg(role="user", content=STOP, usage=user_usage, model="user-model", stop=True))
    return tuple(msgs)


def episode_events(ep: Episode, run_id: str, index: int) -> list[dict[str, Any]]:
    """Every event of one episode, timestamps spread over its duration."""
    ident = {
        "episode_id": ep.episode_id or f"{run_id}-ep{index}",
        "domain": ep.domain,
        "task_id": ep.task_id,
        "sample": ep.sample,
        "attempt": ep.attempt,
    }
    messages = ep.messages if ep.messages is not None else default_messages(ep.calls)
    steps = 2 + sum(1 + len(m.calls) for m in messages) + len(ep.retries)
    clock = iter(ep.start_s + ep.duration_s * i / steps for i in range(steps + 1))
    out: list[dict[str, Any]] = []

    def emit(event_name: str, /, **fields: Any) -> None:
        out.append({"event": event_name, "timestamp": stamp(next(clock)), "run_id": run_id} | ident | fields)

    emit(
        "episode_start",
        seed=ep.seed,
        policy=ep.policy,
        backend="local",
        solo_mode=False,
        max_steps=100,
        timeout_s=600.0,
    )
    for retry in ep.retries:
        emit(
            "retry",
            attempt=ep.attempt,
            error_type=retry.error_type,
            error=f"{retry.error_type}: boom",
            backoff_s=retry.backoff_s,
            scope=retry.scope,
        )
    turn = 0
    call_no = 0
    for msg in messages:
        replay = {} if msg.history is None else {"history": msg.history}
        ids = []
        for _ in msg.calls:
            ids.append(f"call_{index}_{call_no}")
            call_no += 1
        emit(
            "turn",
            role=msg.role,
            turn=turn,
            content=msg.content,
            tool_calls=[
                {"id": i, "name": c.name, "arguments": c.arguments}
                for i, c in zip(ids, msg.calls, strict=True)
            ],
            latency_s=msg.latency_s,
            usage=msg.usage,
            model=msg.model,
            stop=msg.stop,
            **replay,
        )
        turn += 1
        for call_id, call in zip(ids, msg.calls, strict=True):
            emit(
                "tool_call",
                call_id=call_id,
                name=call.name,
                arguments=call.arguments,
                result=call.result,
                error=call.error,
                latency_s=call.latency_s,
                requestor=msg.role,
                turn=turn,
                **replay,
            )
            turn += 1
    reason = ep.termination_reason or {
        "completed": "user_stop",
        "max_steps": "max_steps",
        "agent_error": "agent_error",
    }.get(ep.status)
    if ep.status in ("completed", "max_steps"):
        emit(
            "reward",
            reward=ep.reward,
            reward_info=ep.reward_info
            or {
                "reward": ep.reward,
                "db_check": {"db_match": ep.reward == 1.0, "db_reward": ep.reward},
                "reward_basis": ["DB"],
                "reward_breakdown": {"DB": ep.reward},
            },
            termination_reason=reason,
        )
    if ep.finished:
        emit(
            "episode_end",
            status=ep.status,
            reward=ep.reward,
            turns=len(messages),
            tool_calls=call_no,
            duration_s=ep.duration_s,
            error=ep.error,
            error_type=ep.error_type,
            seed=ep.seed,
            policy=ep.policy,
            termination_reason=reason,
        )
    return out


def write_events(
    path: Path,
    episodes: Sequence[Episode],
    *,
    run_id: str = "run-1",
    append: bool = False,
    run_end: bool = True,
    truncate_last_line: bool = False,
    config: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Write one run (interleaved by timestamp, as concurrent episodes are) and return it."""
    body: list[dict[str, Any]] = []
    for index, ep in enumerate(episodes):
        body += episode_events(ep, run_id, index)
    body.sort(key=lambda e: e["timestamp"])
    start = min((e["timestamp"] for e in body), default=stamp(0))
    end = max((e["timestamp"] for e in body), default=stamp(0))
    events: list[dict[str, Any]] = [
        {
            "event": "run_start",
            "timestamp": start,
            "run_id": run_id,
            "config": config or {"domain": "mock", "n_samples": 1, "concurrency": 8},
            "episodes_planned": len(episodes),
            "engine_version": "0.1.0",
            "pid": 4242,
        },
        *body,
    ]
    if run_end:
        ends = [e for e in body if e["event"] == "episode_end"]
        statuses: dict[str, int] = {}
        for e in ends:
            statuses[e["status"]] = statuses.get(e["status"], 0) + 1
        events.append(
            {
                "event": "run_end",
                "timestamp": end,
                "run_id": run_id,
                "episodes": len(ends),
                "statuses": statuses,
                "mean_reward": 0.0,
                "pass_hat_k": {},
                "duration_s": 10.0,
                "episodes_per_s": len(ends) / 10.0,
                "loop_lag_s": {"p50": 0.001, "p99": 0.004, "max": 0.02},
                "peak_rss_mb": 123.5,
                "interrupted": False,
            }
        )
    data = b"".join(orjson.dumps(e) + b"\n" for e in events)
    if truncate_last_line:
        data = data[: -max(len(orjson.dumps(events[-1])) // 2, 2)]
    with open(path, "ab" if append else "wb") as handle:
        handle.write(data)
    return events


def test_each_episode_start_has_one_end_and_common_fields(tmp_path: Path) -> None:
    episodes = [
        Episode(task_id="a", sample=0, calls=(Call(name="get_users"),)),
        Episode(task_id="a", sample=1, status="timeout", reward=0.0, start_s=0.5),
    ]
    events = write_events(tmp_path / "e.jsonl", episodes)
    lines = (tmp_path / "e.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == events
    starts = [e["episode_id"] for e in events if e["event"] == "episode_start"]
    ends = [e["episode_id"] for e in events if e["event"] == "episode_end"]
    assert sorted(starts) == sorted(ends) and len(set(ends)) == 2
    for e in events:
        assert {"event", "timestamp", "run_id"} <= e.keys()
        assert e["timestamp"].endswith("Z")


def test_tool_call_follows_its_turn_and_matches_its_id(tmp_path: Path) -> None:
    events = write_events(
        tmp_path / "e.jsonl",
        [Episode(task_id="a", sample=0, calls=(Call(name="x"), Call(name="y")))],
    )
    turns = [e for e in events if e["event"] in ("turn", "tool_call")]
    for before, after in zip(turns, turns[1:], strict=False):
        if after["event"] == "tool_call":
            assert after["turn"] == before["turn"] + 1
            requested = [c["id"] for c in before["tool_calls"]] if before["event"] == "turn" else []
            assert after["call_id"] in requested or before["event"] == "tool_call"


def test_truncated_file_ends_mid_line(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    write_events(path, [Episode(task_id="a", sample=0)], truncate_last_line=True)
    assert not path.read_bytes().endswith(b"\n")
