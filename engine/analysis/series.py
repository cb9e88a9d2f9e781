"""Data series behind the plots, aggregated in DuckDB so plots stay cheap at scale."""

from __future__ import annotations

from dataclasses import dataclass

from engine.analysis.load import EventStore

HISTOGRAM_BINS = 20
CDF_POINTS = 101
HEATMAP_MAX_TASKS = 60
IN_FLIGHT_MAX_POINTS = 2000
CDF_MAX_TOOLS = 6


@dataclass(frozen=True, kw_only=True)
class TaskGrid:
    """Per-task rewards over samples (final episodes), for the heatmap."""

    tasks: tuple[str, ...]
    """Row labels (``domain/task_id``), lowest mean reward first."""
    samples: tuple[int, ...]
    """Column labels (sample indices)."""
    rewards: tuple[tuple[float | None, ...], ...]
    """rewards[row][column]; None where the sample is missing or excluded."""
    total_tasks: int
    """Tasks in the run (the grid may show fewer)."""


@dataclass(frozen=True, kw_only=True)
class Series:
    """Everything the plots draw that the summary does not already hold."""

    reward_bins: tuple[int, ...]
    """Counted-episode rewards in ``HISTOGRAM_BINS`` equal bins over [0, 1]."""
    task_grid: TaskGrid
    """Success heatmap data."""
    latency_cdfs: dict[str, tuple[float, ...]]
    """Label -> latency quantiles at 0, 1/(CDF_POINTS-1), ..., 1."""
    in_flight: tuple[tuple[float, int], ...]
    """(seconds since the first episode_start, episodes in flight)."""


def build_series(store: EventStore) -> Series:
    """Query every plot series from ``store``."""
    return Series(
        reward_bins=_reward_bins(store),
        task_grid=_task_grid(store),
        latency_cdfs=_latency_cdfs(store),
        in_flight=_in_flight(store),
    )


def _reward_bins(store: EventStore) -> tuple[int, ...]:
    counts = [0] * HISTOGRAM_BINS
    for index, count in store.con.execute(
        f"""
        SELECT least(greatest(floor(reward * {HISTOGRAM_BINS}), 0), {HISTOGRAM_BINS - 1})::INT,
               count(*)
        FROM final WHERE counted GROUP BY 1
        """
    ).fetchall():
        counts[int(index)] = int(count)
    return tuple(counts)


def _task_grid(store: EventStore) -> TaskGrid:
    con = store.con
    ranked = con.execute(
        f"""
        SELECT domain, task_id FROM final
        GROUP BY domain, task_id
        ORDER BY avg(reward) FILTER (WHERE counted) ASC NULLS FIRST, domain, task_id
        LIMIT {HEATMAP_MAX_TASKS}
        """
    ).fetchall()
    total_row = con.execute("SELECT count(DISTINCT (domain, task_id)) FROM final").fetchone()
    total = int(total_row[0]) if total_row else 0
    samples = tuple(int(s) for (s,) in con.execute("SELECT DISTINCT sample FROM final ORDER BY 1").fetchall())
    column = {s: i for i, s in enumerate(samples)}
    row_of = {(d, t): i for i, (d, t) in enumerate(ranked)}
    grid: list[list[float | None]] = [[None] * len(samples) for _ in ranked]
    cells = con.execute(
        f"""
        SELECT domain, task_id, sample, reward FROM final
        WHERE counted AND (domain, task_id) IN (
            SELECT (domain, task_id) FROM final GROUP BY domain, task_id
            ORDER BY avg(reward) FILTER (WHERE counted) ASC NULLS FIRST, domain, task_id
            LIMIT {HEATMAP_MAX_TASKS}
        )
        """
    ).fetchall()
    for domain, task_id, sample, reward in cells:
        grid[row_of[(domain, task_id)]][column[int(sample)]] = float(reward)
    return TaskGrid(
        tasks=tuple(f"{d}/{t}" for d, t in ranked),
        samples=samples,
        rewards=tuple(tuple(r) for r in grid),
        total_tasks=total,
    )


def _latency_cdfs(store: EventStore) -> dict[str, tuple[float, ...]]:
    points = ", ".join(f"{i / (CDF_POINTS - 1)!r}" for i in range(CDF_POINTS))
    rows = store.con.execute(
        f"""
        SELECT 'model: ' || role, quantile_disc(latency_s, [{points}])
        FROM ev WHERE event = 'turn' AND latency_s > 0 GROUP BY role
        UNION ALL
        SELECT 'all tools', quantile_disc(latency_s, [{points}])
        FROM ev WHERE event = 'tool_call' AND latency_s IS NOT NULL AND history IS NOT TRUE
        HAVING count(*) > 0
        UNION ALL
        SELECT * FROM (
            SELECT 'tool: ' || name, quantile_disc(latency_s, [{points}])
            FROM ev WHERE event = 'tool_call' AND latency_s IS NOT NULL AND history IS NOT TRUE
            GROUP BY name ORDER BY count(*) DESC, name LIMIT {CDF_MAX_TOOLS}
        )
        """
    ).fetchall()
    order = {"model": 0, "all": 1, "tool": 2}
    rows.sort(key=lambda row: (order.get(str(row[0]).split(":")[0].split(" ")[0], 3), str(row[0])))
    return {str(label): tuple(float(v) for v in values) for label, values in rows}


def _in_flight(store: EventStore) -> tuple[tuple[float, int], ...]:
    rows = store.con.execute(
        f"""
        WITH deltas AS (
            SELECT ts, 1 AS d FROM ev WHERE event = 'episode_start' AND ts IS NOT NULL
            UNION ALL
            SELECT e.ts, -1 FROM ev e
            WHERE e.event = 'episode_end' AND e.ts IS NOT NULL
              AND e.episode_id IN (SELECT episode_id FROM ev WHERE event = 'episode_start')
        ), steps AS (
            SELECT ts, sum(d) OVER (ORDER BY ts, d DESC ROWS UNBOUNDED PRECEDING) AS n
            FROM deltas
        ), bounds AS (
            SELECT min(ts) AS t0, greatest(max(ts) - min(ts), 1) AS span FROM steps
        )
        SELECT (min(ts) - t0) / 1e6 AS t, max(n) AS n
        FROM steps, bounds
        GROUP BY floor((ts - t0) / span * {IN_FLIGHT_MAX_POINTS}), t0
        ORDER BY t
        """
    ).fetchall()
    return tuple((float(t), int(n)) for t, n in rows)
