"""Export a run in tau2's own ``Results`` format (``--export-tau2``).

Each counted final episode becomes a tau2 ``SimulationRun`` whose messages are
rebuilt from its ``turn`` and ``tool_call`` events, so tau2's viewer and
``tau2.metrics.agent_metrics.compute_metrics`` read the file and agree with the
summary. tau2 is imported lazily: the import takes seconds.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson

from engine.analysis.errors import InputError
from engine.analysis.load import TRAJECTORY_COLUMNS, EventStore, read_json_sql

_SAMPLER_KEYS = ("temperature", "top_p", "max_tokens", "seed")
_STATUS_REASONS = {"max_steps": "max_steps", "agent_error": "agent_error"}


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    """What ``export_tau2`` wrote."""

    path: Path
    """The Results JSON file."""
    domain: str
    """The run's domain."""
    simulations: int
    """Simulations written (counted final episodes)."""
    tasks: int
    """tau2 tasks written."""


@contextmanager
def _quiet_tau2() -> Iterator[None]:
    """tau2 logs its registry through loguru at import; keep analyze's output clean."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from loguru import logger

    logger.disable("tau2")
    try:
        yield
    finally:
        logger.enable("tau2")


def export_tau2(store: EventStore, path: Path) -> ExportResult:
    """Write the counted final episodes of ``store`` to ``path`` as tau2 ``Results``."""
    con = store.con
    episodes = _dicts(
        con,
        """
        SELECT f.episode_id, f.domain, f.task_id, f.sample, f.seed, f.policy, f.status,
               f.reward, f.duration_s, f.termination_reason, f."timestamp" AS end_time,
               s."timestamp" AS start_time, s.max_steps, s.solo_mode, s.policy AS start_policy
        FROM final f
        LEFT JOIN (SELECT * FROM ev WHERE event = 'episode_start') s USING (episode_id)
        WHERE f.counted
        ORDER BY f.domain, f.task_id, f.sample
        """,
    )
    if not episodes:
        raise InputError("--export-tau2: no counted episodes to export")
    domains = sorted({str(e["domain"]) for e in episodes})
    if len(domains) > 1:
        raise InputError(f"--export-tau2 needs one domain per file; the events hold {', '.join(domains)}")
    domain = domains[0]
    trajectory, config = _read_export_events(store)
    versions = [
        v
        for (v,) in con.execute(
            "SELECT DISTINCT engine_version FROM ev WHERE engine_version IS NOT NULL ORDER BY 1"
        ).fetchall()
    ]

    with _quiet_tau2():
        from tau2.config import DEFAULT_MAX_ERRORS, DEFAULT_MAX_STEPS
        from tau2.data_model.simulation import (
            AgentInfo,
            Info,
            Results,
            RewardInfo,
            SimulationRun,
            TerminationReason,
            UserInfo,
        )
        from tau2.registry import registry

        if domain not in registry.get_domains():
            raise InputError(
                f"--export-tau2: unknown tau2 domain {domain!r}; expected one of "
                + ", ".join(sorted(registry.get_domains()))
            )
        tasks = _load_tasks(registry, domain, {str(e["task_id"]) for e in episodes})
        environment_info = registry.get_env_constructor(domain)().get_info()

        reasons = {r.value for r in TerminationReason}
        simulations = []
        models: dict[str, Counter[str]] = defaultdict(Counter)
        for ep in episodes:
            events = trajectory.get(str(ep["episode_id"]), [])
            messages, stop_role = _messages(events, models)
            reward_event = next((e for e in reversed(events) if e["event"] == "reward"), None)
            reward_info = _reward_info(RewardInfo, ep, reward_event)
            reason = _termination_reason(ep, reward_event, stop_role, reasons)
            simulations.append(
                SimulationRun(
                    id=str(ep["episode_id"]),
                    task_id=str(ep["task_id"]),
                    timestamp=str(ep["end_time"]),
                    start_time=str(ep["start_time"] or ep["end_time"]),
                    end_time=str(ep["end_time"]),
                    duration=float(ep["duration_s"] or 0.0),
                    termination_reason=TerminationReason(reason),
                    reward_info=reward_info,
                    messages=messages,
                    trial=int(ep["sample"]),
                    seed=None if ep["seed"] is None else int(ep["seed"]),
                )
            )

        samples_per_task = Counter(str(e["task_id"]) for e in episodes)
        max_steps = [int(e["max_steps"]) for e in episodes if e["max_steps"] is not None]
        solo = all(bool(e["solo_mode"]) for e in episodes)
        policies = sorted({str(e["start_policy"] or e["policy"]) for e in episodes})
        sampler = {k: config[k] for k in _SAMPLER_KEYS if k in config}
        version = ", ".join(versions) or "unknown version"
        info = Info(
            git_commit=str(config.get("git_commit") or f"unknown (tau2-engine {version})"),
            num_trials=max(samples_per_task.values()),
            max_steps=max(max_steps) if max_steps else int(config.get("max_steps") or DEFAULT_MAX_STEPS),
            max_errors=int(config.get("max_errors") or DEFAULT_MAX_ERRORS),
            user_info=UserInfo(
                implementation="none (solo mode)" if solo else "tau2-engine user simulator",
                llm=_most_common(models["user"]),
            ),
            agent_info=AgentInfo(
                implementation="tau2-engine Agents SDK agent (policy: " + ", ".join(policies) + ")",
                llm=_most_common(models["assistant"]),
                llm_args=sampler or None,
            ),
            environment_info=environment_info,
            seed=config["seed"] if isinstance(config.get("seed"), int) else None,
        )
        results = Results(info=info, tasks=tasks, simulations=simulations)
        try:
            path.write_text(results.model_dump_json(indent=2))
        except OSError as exc:
            raise InputError(f"cannot write --export-tau2 file {str(path)!r}: {exc}") from exc
    return ExportResult(path=path, domain=domain, simulations=len(simulations), tasks=len(tasks))


def _dicts(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params or {})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _read_export_events(
    store: EventStore,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """turn, tool_call and reward events of the counted final episodes in trajectory
    order, and the merged ``run_start`` configs (later runs win)."""
    columns = dict(TRAJECTORY_COLUMNS, stop="BOOLEAN", model="VARCHAR")
    rows = _dicts(
        store.con,
        f"""
        SELECT * FROM (
            SELECT *, row_number() OVER () AS seq FROM {read_json_sql(columns)}
        )
        WHERE event = 'run_start' OR (
            event IN ('turn', 'tool_call', 'reward')
            AND episode_id IN (SELECT episode_id FROM final WHERE counted)
        )
        ORDER BY event <> 'run_start', CASE WHEN event = 'run_start' THEN "timestamp" END,
                 episode_id, event = 'reward', turn, seq
        """,
        {"files": [str(f) for f in store.files]},
    )
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    config: dict[str, Any] = {}
    for row in rows:
        if row["event"] == "run_start":
            value = _json(row["config"])
            if isinstance(value, dict):
                config.update(value)
        else:
            grouped[str(row["episode_id"])].append(row)
    return grouped, config


def _json(value: str | None) -> Any:
    return None if value is None else orjson.loads(value)


def _messages(events: list[dict[str, Any]], models: dict[str, Counter[str]]) -> tuple[list[Any], str | None]:
    """tau2 messages from the events; also the role of the message that stopped the talk."""
    from tau2.data_model.message import AssistantMessage, ToolCall, ToolMessage, UserMessage

    messages: list[Any] = []
    stop_role = None
    for e in events:
        if e["event"] == "turn":
            role = str(e["role"])
            calls = [
                ToolCall(
                    id=str(c.get("id", "")),
                    name=str(c["name"]),
                    arguments=dict(c.get("arguments") or {}),
                    requestor="user" if role == "user" else "assistant",
                )
                for c in (_json(e["tool_calls"]) or [])
            ]
            usage = _json(e["usage"])
            fields = {
                "content": e["content"],
                "tool_calls": calls or None,
                "turn_idx": e["turn"],
                "timestamp": e["timestamp"],
                "usage": usage if isinstance(usage, dict) else None,
            }
            if role == "user":
                messages.append(UserMessage(role="user", **fields))
            else:
                messages.append(AssistantMessage(role="assistant", **fields))
            if e["model"]:
                models[role][str(e["model"])] += 1
            if e["stop"]:
                stop_role = role
        elif e["event"] == "tool_call":
            messages.append(
                ToolMessage(
                    id=str(e["call_id"]),
                    role="tool",
                    content=e["result"],
                    requestor="user" if e["requestor"] == "user" else "assistant",
                    error=bool(_json(e["error"])),
                    turn_idx=e["turn"],
                    timestamp=e["timestamp"],
                )
            )
    return messages, stop_role


def _reward_info(reward_info_model: Any, episode: dict[str, Any], reward_event: dict[str, Any] | None) -> Any:
    """The reward event's RewardInfo, holding the recorded episode_end reward."""
    recorded = float(episode["reward"])
    if reward_event is None or reward_event["reward_info"] is None:
        return reward_info_model(
            reward=recorded,
            reward_basis=None,
            info={"note": f"no reward event; status {episode['status']}"},
        )
    info = reward_info_model.model_validate(_json(reward_event["reward_info"]))
    if abs(float(info.reward) - recorded) > 1e-12:
        extra = dict(info.info or {})
        extra["evaluated_reward"] = info.reward
        extra["note"] = f"reward set to the episode_end value (status {episode['status']})"
        info = info.model_copy(update={"reward": recorded, "info": extra})
    return info


def _termination_reason(
    episode: dict[str, Any],
    reward_event: dict[str, Any] | None,
    stop_role: str | None,
    valid: set[str],
) -> str:
    for candidate in (
        reward_event["termination_reason"] if reward_event else None,
        episode["termination_reason"],
        _STATUS_REASONS.get(str(episode["status"])),
    ):
        if candidate in valid:
            return str(candidate)
    # A completed episode without a recorded reason stopped at its stop message.
    return "user_stop" if stop_role == "user" else "agent_stop"


def _load_tasks(registry: Any, domain: str, task_ids: set[str]) -> list[Any]:
    loader = registry.get_tasks_loader(domain)
    try:
        tasks = loader(None)
    except TypeError:
        tasks = loader()
    by_id = {t.id: t for t in tasks}
    missing = sorted(task_ids - by_id.keys())
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise InputError(f"--export-tau2: task id(s) {shown}{more} not in tau2's {domain!r} tasks")
    return [by_id[t] for t in sorted(task_ids)]


def _most_common(counter: Counter[str]) -> str | None:
    return counter.most_common(1)[0][0] if counter else None
