"""Run metrics computed in DuckDB SQL from an :class:`EventStore`.

Reward metrics (mean reward, pass^k, per-domain and per-task tables) use the
``final`` episodes (latest ``episode_end`` per domain, task and sample) whose
status is counted; every attempt still appears in the status and failure tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from engine.analysis.load import EventStore
from engine.analysis.stamps import StampRow, stamps
from engine.analysis.stats import SUCCESS_TOLERANCE, mean_ci95, pass_hat_ks

_SUCCESS_SQL = f"(reward BETWEEN {1 - SUCCESS_TOLERANCE!r} AND {1 + SUCCESS_TOLERANCE!r})"


@dataclass(frozen=True, kw_only=True)
class StatusRow:
    """Episodes with one status."""

    status: str
    """Episode status (``completed``, ``infra_error``, ...)."""
    final: int
    """Latest attempts per (domain, task_id, sample) with this status."""
    all: int
    """All ``episode_end`` lines with this status, retried attempts included."""


@dataclass(frozen=True, kw_only=True)
class EpisodeCounts:
    """How many episodes were seen and which ones count."""

    attempts: int
    """``episode_end`` lines in the files."""
    final: int
    """Distinct (domain, task_id, sample) keys, one latest attempt each."""
    counted: int
    """Final episodes whose status counts for reward metrics."""
    excluded: int
    """Final episodes left out of reward metrics (infra_error, timeout, cancelled)."""
    unfinished: int
    """``episode_start`` lines with no ``episode_end`` (a killed writer)."""
    by_status: tuple[StatusRow, ...]
    """One row per status."""


@dataclass(frozen=True, kw_only=True)
class RewardSummary:
    """Mean reward of the counted episodes with a 95% confidence interval."""

    n: int
    """Counted episodes."""
    mean: float | None
    """Mean recorded reward."""
    std: float | None
    """Sample standard deviation."""
    ci95_low: float | None
    """Lower 95% Student-t bound."""
    ci95_high: float | None
    """Upper 95% Student-t bound."""
    successes: int
    """Episodes with reward within 1e-6 of 1 (tau2's is_successful)."""


@dataclass(frozen=True, kw_only=True)
class DomainRow:
    """Reward metrics of one domain."""

    domain: str
    """Domain name."""
    tasks: int
    """Tasks with at least one counted episode."""
    episodes: int
    """Counted episodes."""
    excluded: int
    """Final episodes excluded from reward metrics."""
    successes: int
    """Successful counted episodes."""
    mean_reward: float | None
    """Mean reward of counted episodes."""
    ci95_low: float | None
    """Lower 95% bound of the mean reward."""
    ci95_high: float | None
    """Upper 95% bound of the mean reward."""
    pass_hat_k: dict[int, float]
    """pass^k for k = 1..min samples per task in this domain."""


@dataclass(frozen=True, kw_only=True)
class TaskRow:
    """Reward metrics of one task."""

    domain: str
    """Domain name."""
    task_id: str
    """tau2 task id."""
    samples: int
    """Counted episodes (samples) of the task."""
    successes: int
    """Successful samples."""
    mean_reward: float | None
    """Mean reward over counted samples."""
    excluded: int
    """Final samples excluded from reward metrics."""


@dataclass(frozen=True, kw_only=True)
class ToolRow:
    """Usage of one tool over every ``tool_call`` event."""

    name: str
    """Tool name."""
    calls: int
    """Calls."""
    errors: int
    """Calls whose ``error`` flag is true."""
    error_rate: float
    """errors / calls."""
    latency_mean_s: float | None
    """Mean latency."""
    latency_p50_s: float | None
    """Median latency."""
    latency_p95_s: float | None
    """95th percentile latency."""
    latency_p99_s: float | None
    """99th percentile latency."""


@dataclass(frozen=True, kw_only=True)
class EpisodeShape:
    """Length of the final episodes."""

    episodes: int
    """Final episodes measured."""
    turns_mean: float | None
    """Mean messages (``turn`` events) per episode."""
    turns_p50: float | None
    """Median turns."""
    turns_p95: float | None
    """95th percentile turns."""
    turns_max: int | None
    """Longest episode in turns."""
    tool_calls_mean: float | None
    """Mean tool calls per episode."""
    duration_mean_s: float | None
    """Mean episode wall time."""
    duration_p50_s: float | None
    """Median episode wall time."""
    duration_p95_s: float | None
    """95th percentile episode wall time."""


@dataclass(frozen=True, kw_only=True)
class ModelRow:
    """Messages of one role and model: latency and token usage."""

    role: str
    """``assistant`` (the policy) or ``user`` (the user simulator)."""
    model: str | None
    """Model name when known."""
    messages: int
    """``turn`` events."""
    calls: int
    """Messages with a model call (latency > 0 or usage known; the fixed greeting is not)."""
    latency_mean_s: float | None
    """Mean model call latency."""
    latency_p50_s: float | None
    """Median model call latency."""
    latency_p95_s: float | None
    """95th percentile model call latency."""
    latency_p99_s: float | None
    """99th percentile model call latency."""
    input_tokens: int
    """Summed input tokens where usage is known."""
    output_tokens: int
    """Summed output tokens where usage is known."""
    total_tokens: int
    """Summed total tokens where usage is known."""


@dataclass(frozen=True, kw_only=True)
class FailureRow:
    """Episodes (all attempts) that did not complete, with one status and error type."""

    status: str
    """Episode status."""
    error_type: str | None
    """Exception class name, None when there was no error."""
    count: int
    """``episode_end`` lines."""


@dataclass(frozen=True, kw_only=True)
class RetryRow:
    """``retry`` events of one scope and error type."""

    scope: str | None
    """``episode``, ``model_call`` or ``env_create``."""
    error_type: str | None
    """Exception class name."""
    count: int
    """Retries."""
    backoff_total_s: float
    """Summed backoff."""


@dataclass(frozen=True, kw_only=True)
class RunRow:
    """One engine run (``run_id``) from its ``run_start`` and ``run_end``."""

    run_id: str
    """Run id."""
    started: str | None
    """``run_start`` timestamp."""
    engine_version: str | None
    """Engine version from ``run_start``."""
    episodes_planned: int | None
    """Planned episodes."""
    ended: bool
    """A ``run_end`` line exists."""
    episodes: int | None
    """Episodes the run reported."""
    duration_s: float | None
    """Run wall time."""
    episodes_per_s: float | None
    """Throughput."""
    loop_lag_p50_s: float | None
    """Median event-loop lag."""
    loop_lag_p99_s: float | None
    """99th percentile event-loop lag."""
    loop_lag_max_s: float | None
    """Worst event-loop lag."""
    peak_rss_mb: float | None
    """Peak resident memory."""
    interrupted: bool | None
    """The run was interrupted."""


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Everything ``tau2-engine analyze`` reports."""

    files: tuple[str, ...]
    """Events files read."""
    lines: int
    """Lines read."""
    malformed_lines: int
    """Lines skipped because they did not parse (e.g. a truncated last line)."""
    events: dict[str, int]
    """Events by name."""
    episodes: EpisodeCounts
    """Episode counts and statuses."""
    reward: RewardSummary
    """Mean reward of counted episodes."""
    pass_hat_k: dict[int, float]
    """tau2 pass^k (mean over tasks of C(c,k)/C(n,k)), k = 1..min samples per task."""
    domains: tuple[DomainRow, ...]
    """Per-domain metrics."""
    tasks: tuple[TaskRow, ...]
    """Per-task metrics, lowest mean reward first."""
    tools: tuple[ToolRow, ...]
    """Per-tool usage, most called first."""
    episode_shape: EpisodeShape
    """Turns, tool calls and duration per episode."""
    model: tuple[ModelRow, ...]
    """Model latency and tokens per role and model."""
    failures: tuple[FailureRow, ...]
    """Failure taxonomy: status x error type over all attempts."""
    retries: tuple[RetryRow, ...]
    """Retries by scope and error type."""
    runs: tuple[RunRow, ...]
    """Run-level throughput and loop lag."""
    stamps: tuple[StampRow, ...] = ()
    """Comparability stamps by domain (engine.stamp): which data, evaluator, user, judge."""


def summarize(store: EventStore) -> Summary:
    """Compute the full :class:`Summary` of the events in ``store``."""
    con = store.con
    tasks = _tasks(con)
    counted_tasks = [(t.samples, t.successes) for t in tasks if t.samples > 0]
    return Summary(
        files=tuple(str(f) for f in store.files),
        lines=store.lines,
        malformed_lines=store.malformed,
        events={str(name): int(n) for name, n in _rows(con, _EVENTS_SQL)},
        episodes=_episode_counts(con),
        reward=_reward(con),
        pass_hat_k=pass_hat_ks(counted_tasks),
        domains=_domains(con, tasks),
        tasks=tuple(tasks),
        tools=tuple(ToolRow(**r) for r in _dicts(con, _TOOLS_SQL)),
        episode_shape=EpisodeShape(**_dicts(con, _SHAPE_SQL)[0]),
        model=tuple(ModelRow(**r) for r in _dicts(con, _MODEL_SQL)),
        failures=tuple(FailureRow(**r) for r in _dicts(con, _FAILURES_SQL)),
        retries=tuple(RetryRow(**r) for r in _dicts(con, _RETRIES_SQL)),
        runs=tuple(RunRow(**r) for r in _dicts(con, _RUNS_SQL)),
        stamps=stamps(con),
    )


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def _dicts(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


_EVENTS_SQL = "SELECT event, count(*) FROM ev GROUP BY event ORDER BY count(*) DESC, event"


def _episode_counts(con: duckdb.DuckDBPyConnection) -> EpisodeCounts:
    by_status = tuple(
        StatusRow(status=str(status), final=int(final), all=int(total))
        for status, final, total in _rows(
            con,
            """
            SELECT COALESCE(a.status, '?') AS status, COALESCE(f.n, 0), a.n
            FROM (SELECT status, count(*) AS n FROM ends GROUP BY status) a
            LEFT JOIN (SELECT status, count(*) AS n FROM final GROUP BY status) f
              ON a.status IS NOT DISTINCT FROM f.status
            ORDER BY a.n DESC, status
            """,
        )
    )
    row = _dicts(
        con,
        """
        SELECT (SELECT count(*) FROM ends) AS attempts,
               (SELECT count(*) FROM final) AS final,
               (SELECT count(*) FROM final WHERE counted) AS counted,
               (SELECT count(*) FROM ev s WHERE s.event = 'episode_start'
                  AND NOT EXISTS (SELECT 1 FROM ends e WHERE e.episode_id = s.episode_id)
               ) AS unfinished
        """,
    )[0]
    return EpisodeCounts(
        attempts=int(row["attempts"]),
        final=int(row["final"]),
        counted=int(row["counted"]),
        excluded=int(row["final"]) - int(row["counted"]),
        unfinished=int(row["unfinished"]),
        by_status=by_status,
    )


def _reward(con: duckdb.DuckDBPyConnection) -> RewardSummary:
    row = _dicts(
        con,
        f"""
        SELECT count(*) AS n, avg(reward) AS mean, stddev_samp(reward) AS std,
               count(*) FILTER (WHERE {_SUCCESS_SQL}) AS successes
        FROM final WHERE counted
        """,
    )[0]
    ci = mean_ci95(int(row["n"]), row["mean"], row["std"])
    return RewardSummary(
        n=ci.n,
        mean=ci.mean,
        std=ci.std,
        ci95_low=ci.ci95_low,
        ci95_high=ci.ci95_high,
        successes=int(row["successes"]),
    )


def _tasks(con: duckdb.DuckDBPyConnection) -> list[TaskRow]:
    return [
        TaskRow(**r)
        for r in _dicts(
            con,
            f"""
            SELECT domain, task_id,
                   count(*) FILTER (WHERE counted) AS samples,
                   count(*) FILTER (WHERE counted AND {_SUCCESS_SQL}) AS successes,
                   avg(reward) FILTER (WHERE counted) AS mean_reward,
                   count(*) FILTER (WHERE NOT counted) AS excluded
            FROM final
            GROUP BY domain, task_id
            ORDER BY mean_reward ASC NULLS FIRST, domain, task_id
            """,
        )
    ]


def _domains(con: duckdb.DuckDBPyConnection, tasks: Sequence[TaskRow]) -> tuple[DomainRow, ...]:
    rows = []
    for r in _dicts(
        con,
        f"""
        SELECT domain,
               count(DISTINCT task_id) FILTER (WHERE counted) AS tasks,
               count(*) FILTER (WHERE counted) AS episodes,
               count(*) FILTER (WHERE NOT counted) AS excluded,
               count(*) FILTER (WHERE counted AND {_SUCCESS_SQL}) AS successes,
               avg(reward) FILTER (WHERE counted) AS mean,
               stddev_samp(reward) FILTER (WHERE counted) AS std
        FROM final GROUP BY domain ORDER BY domain
        """,
    ):
        ci = mean_ci95(int(r["episodes"]), r["mean"], r["std"])
        per_task = [(t.samples, t.successes) for t in tasks if t.domain == r["domain"] and t.samples > 0]
        rows.append(
            DomainRow(
                domain=r["domain"],
                tasks=int(r["tasks"]),
                episodes=int(r["episodes"]),
                excluded=int(r["excluded"]),
                successes=int(r["successes"]),
                mean_reward=ci.mean,
                ci95_low=ci.ci95_low,
                ci95_high=ci.ci95_high,
                pass_hat_k=pass_hat_ks(per_task),
            )
        )
    return tuple(rows)


# Messages replayed from a task's initial history carry `history: true`; they were
# not produced (no model or tool call happened) during the episode.
_LIVE = "history IS NOT TRUE"

_TOOLS_SQL = f"""
SELECT name,
       count(*) AS calls,
       count(*) FILTER (WHERE TRY_CAST(error AS BOOLEAN)) AS errors,
       count(*) FILTER (WHERE TRY_CAST(error AS BOOLEAN)) / count(*) AS error_rate,
       avg(latency_s) AS latency_mean_s,
       quantile_cont(latency_s, 0.5) AS latency_p50_s,
       quantile_cont(latency_s, 0.95) AS latency_p95_s,
       quantile_cont(latency_s, 0.99) AS latency_p99_s
FROM ev WHERE event = 'tool_call' AND {_LIVE}
GROUP BY name ORDER BY calls DESC, name
"""

_SHAPE_SQL = """
SELECT count(*) AS episodes,
       avg(turns) AS turns_mean,
       quantile_cont(turns, 0.5) AS turns_p50,
       quantile_cont(turns, 0.95) AS turns_p95,
       max(turns) AS turns_max,
       avg(tool_calls) AS tool_calls_mean,
       avg(duration_s) AS duration_mean_s,
       quantile_cont(duration_s, 0.5) AS duration_p50_s,
       quantile_cont(duration_s, 0.95) AS duration_p95_s
FROM final
"""

_MODEL_CALL_SQL = "(latency_s > 0 OR (usage IS NOT NULL AND json_type(usage) = 'OBJECT'))"

_MODEL_SQL = f"""
SELECT role, model,
       count(*) AS messages,
       count(*) FILTER (WHERE {_MODEL_CALL_SQL}) AS calls,
       avg(latency_s) FILTER (WHERE {_MODEL_CALL_SQL}) AS latency_mean_s,
       quantile_cont(latency_s, 0.5) FILTER (WHERE {_MODEL_CALL_SQL}) AS latency_p50_s,
       quantile_cont(latency_s, 0.95) FILTER (WHERE {_MODEL_CALL_SQL}) AS latency_p95_s,
       quantile_cont(latency_s, 0.99) FILTER (WHERE {_MODEL_CALL_SQL}) AS latency_p99_s,
       COALESCE(sum(TRY_CAST(usage ->> '$.input_tokens' AS BIGINT)), 0) AS input_tokens,
       COALESCE(sum(TRY_CAST(usage ->> '$.output_tokens' AS BIGINT)), 0) AS output_tokens,
       COALESCE(sum(TRY_CAST(usage ->> '$.total_tokens' AS BIGINT)), 0) AS total_tokens
FROM ev WHERE event = 'turn' AND {_LIVE}
GROUP BY role, model ORDER BY role, messages DESC, model
"""

_FAILURES_SQL = """
SELECT COALESCE(status, '?') AS status, error_type, count(*) AS count
FROM ends WHERE status IS DISTINCT FROM 'completed'
GROUP BY ALL ORDER BY count DESC, status, error_type NULLS FIRST
"""

_RETRIES_SQL = """
SELECT scope, error_type, count(*) AS count, COALESCE(sum(backoff_s), 0.0) AS backoff_total_s
FROM ev WHERE event = 'retry'
GROUP BY ALL ORDER BY count DESC, scope, error_type
"""

_RUNS_SQL = """
WITH s AS (
    SELECT run_id, min("timestamp") AS started, any_value(engine_version) AS engine_version,
           any_value(episodes_planned) AS episodes_planned, min(ts) AS t
    FROM ev WHERE event = 'run_start' GROUP BY run_id
), e AS (
    SELECT run_id, arg_max(episodes, ts) AS episodes, arg_max(duration_s, ts) AS duration_s,
           arg_max(episodes_per_s, ts) AS episodes_per_s,
           arg_max(TRY_CAST(loop_lag_s ->> '$.p50' AS DOUBLE), ts) AS loop_lag_p50_s,
           arg_max(TRY_CAST(loop_lag_s ->> '$.p99' AS DOUBLE), ts) AS loop_lag_p99_s,
           arg_max(TRY_CAST(loop_lag_s ->> '$.max' AS DOUBLE), ts) AS loop_lag_max_s,
           arg_max(peak_rss_mb, ts) AS peak_rss_mb, arg_max(interrupted, ts) AS interrupted
    FROM ev WHERE event = 'run_end' GROUP BY run_id
), ids AS (SELECT run_id FROM s UNION SELECT run_id FROM e)
SELECT ids.run_id, s.started, s.engine_version, s.episodes_planned,
       e.run_id IS NOT NULL AS ended, e.episodes, e.duration_s, e.episodes_per_s,
       e.loop_lag_p50_s, e.loop_lag_p99_s, e.loop_lag_max_s, e.peak_rss_mb, e.interrupted
FROM ids LEFT JOIN s USING (run_id) LEFT JOIN e USING (run_id)
WHERE ids.run_id IS NOT NULL
ORDER BY s.t NULLS LAST, ids.run_id
"""
