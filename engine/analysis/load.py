"""Read events JSON Lines files into DuckDB tables.

The files are never looped over in Python: DuckDB parses them with an explicit
column map. Fields whose JSON type differs by event (``error`` is a bool on
``tool_call`` but a string on ``episode_end``; ``tool_calls`` is a list on
``turn`` but a count on ``episode_end``) are read as JSON and cast per event.
A truncated or malformed line (a killed writer) becomes an all-NULL row that
is counted and dropped.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from engine.analysis.errors import InputError

COUNTED_STATUSES = ("completed", "max_steps", "agent_error")
"""Statuses whose recorded reward enters mean reward and pass^k."""

EXCLUDED_STATUSES = ("infra_error", "timeout", "cancelled")
"""Statuses left out of mean reward and pass^k (reported as excluded)."""

_MAX_LINE_BYTES = 1 << 26  # one event line may hold a large tool result

_METRIC_COLUMNS: Mapping[str, str] = {
    "event": "VARCHAR",
    "timestamp": "VARCHAR",
    "run_id": "VARCHAR",
    "episode_id": "VARCHAR",
    "domain": "VARCHAR",
    "task_id": "VARCHAR",
    "sample": "BIGINT",
    "attempt": "BIGINT",
    "role": "VARCHAR",
    "turn": "BIGINT",
    "latency_s": "DOUBLE",
    "usage": "JSON",
    "model": "VARCHAR",
    "name": "VARCHAR",
    "error": "JSON",
    "requestor": "VARCHAR",
    "history": "BOOLEAN",
    "reward": "DOUBLE",
    "status": "VARCHAR",
    "turns": "BIGINT",
    "tool_calls": "JSON",
    "duration_s": "DOUBLE",
    "error_type": "VARCHAR",
    "termination_reason": "VARCHAR",
    "backoff_s": "DOUBLE",
    "scope": "VARCHAR",
    "seed": "BIGINT",
    "policy": "VARCHAR",
    "backend": "VARCHAR",
    "solo_mode": "BOOLEAN",
    "max_steps": "BIGINT",
    "episodes_planned": "BIGINT",
    "engine_version": "VARCHAR",
    "episodes": "BIGINT",
    "episodes_per_s": "DOUBLE",
    "loop_lag_s": "JSON",
    "peak_rss_mb": "DOUBLE",
    "interrupted": "BOOLEAN",
    "stamp": "JSON",
    "fingerprint": "VARCHAR",
}

TRAJECTORY_COLUMNS: Mapping[str, str] = {
    "event": "VARCHAR",
    "timestamp": "VARCHAR",
    "episode_id": "VARCHAR",
    "role": "VARCHAR",
    "turn": "BIGINT",
    "content": "VARCHAR",
    "tool_calls": "JSON",
    "usage": "JSON",
    "call_id": "VARCHAR",
    "name": "VARCHAR",
    "arguments": "JSON",
    "result": "VARCHAR",
    "error": "JSON",
    "requestor": "VARCHAR",
    "reward": "DOUBLE",
    "reward_info": "JSON",
    "termination_reason": "VARCHAR",
    "config": "JSON",
}
"""Columns the tau2 export needs on top of the metric columns (full messages)."""


def resolve_paths(patterns: Iterable[str]) -> list[Path]:
    """Expand globs and check every file exists; keeps order, drops duplicates."""
    seen: dict[Path, None] = {}
    for pattern in patterns:
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file()]
            if not files:
                raise InputError(f"no events file matches {pattern!r}")
        else:
            path = Path(pattern).expanduser()
            if not path.exists():
                raise InputError(f"no such events file: {pattern!r}")
            if not path.is_file():
                raise InputError(f"not a file: {pattern!r}")
            files = [path]
        for file in files:
            seen.setdefault(file.resolve(), None)
    if not seen:
        raise InputError("no events files given")
    return list(seen)


def read_json_sql(columns: Mapping[str, str]) -> str:
    """A ``read_json`` call over the ``$files`` parameter with the given column map."""
    column_map = ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items())
    return (
        "read_json($files, format = 'newline_delimited', columns = {"
        + column_map
        + f"}}, ignore_errors = true, filename = true, maximum_object_size = {_MAX_LINE_BYTES})"
    )


@dataclass(frozen=True, kw_only=True)
class EventStore:
    """A DuckDB connection holding one run's (or several runs') events."""

    con: duckdb.DuckDBPyConnection
    """Connection with tables ``ev`` (all valid lines), ``ends`` and ``final``."""
    files: tuple[Path, ...]
    """The files read, in order."""
    lines: int
    """Lines read, malformed ones included."""
    malformed: int
    """Lines DuckDB could not parse (e.g. a truncated last line); dropped."""


def open_events(paths: Sequence[Path]) -> EventStore:
    """Load the files into an in-memory DuckDB and build the per-episode tables.

    ``final`` keeps the latest ``episode_end`` per episode fingerprint
    (engine.fingerprint, the key ``--resume`` uses): a resumed run appends new attempts and
    the newest one is authoritative. Lines without a fingerprint (an older engine) are
    keyed on (domain, task_id, sample).
    """
    files = [str(p) for p in paths]
    con = duckdb.connect(":memory:")
    try:
        con.execute(
            f"""
            CREATE TABLE ev AS
            SELECT * EXCLUDE (filename),
                   epoch_us(TRY_CAST("timestamp" AS TIMESTAMPTZ)) AS ts,
                   list_position($files, filename) AS file_idx,
                   row_number() OVER () AS seq
            FROM {read_json_sql(_METRIC_COLUMNS)}
            """,
            {"files": files},
        )
    except duckdb.Error as exc:
        con.close()
        names = ", ".join(repr(f) for f in files)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"cannot read events from {names}: {first}") from exc
    lines, malformed = _fetch_counts(con)
    if lines == malformed:
        con.close()
        names = ", ".join(repr(f) for f in files)
        raise InputError(f"no events in {names} ({malformed} malformed lines)")
    con.execute("DELETE FROM ev WHERE event IS NULL")
    con.execute(
        """
        CREATE TABLE ends AS
        SELECT episode_id, run_id, domain, task_id, sample, attempt, ts, "timestamp",
               status, COALESCE(reward, 0.0) AS reward, turns,
               TRY_CAST(tool_calls AS BIGINT) AS tool_calls, duration_s,
               error_type, error ->> '$' AS error, seed, policy, termination_reason,
               fingerprint, file_idx, seq
        FROM ev WHERE event = 'episode_end'
        """
    )
    con.execute(
        f"""
        CREATE TABLE final AS
        SELECT * EXCLUDE (rn),
               status IN {COUNTED_STATUSES!r} AS counted
        FROM (
            SELECT *, row_number() OVER (
                PARTITION BY COALESCE(fingerprint, concat_ws('/', domain, task_id, sample))
                ORDER BY ts DESC NULLS LAST, file_idx DESC, seq DESC
            ) AS rn
            FROM ends
        ) WHERE rn = 1
        """
    )
    return EventStore(con=con, files=tuple(paths), lines=lines, malformed=malformed)


def _fetch_counts(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    row = con.execute("SELECT count(*), count(*) FILTER (WHERE event IS NULL) FROM ev").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def load_events(patterns: Iterable[str]) -> EventStore:
    """Resolve ``patterns`` (files or globs) and open them."""
    return open_events(resolve_paths(patterns))
