"""Comparability stamps in events files: which ones a run has, and whether two runs agree.

Each episode's `episode_start` carries its stamp (engine.stamp): data source and content
hash, tau2 version, solo or dual control, user simulator and model, judge model. Events
written before stamps existed have none; such runs are shown as "not recorded".
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from engine.stamp import COMPARED, FIELDS


@dataclass(frozen=True, kw_only=True)
class StampRow:
    """The episodes of one domain that share one stamp."""

    domain: str
    """Domain name."""
    episodes: int
    """Episode attempts with this stamp."""
    stamp: dict[str, Any] | None
    """The stamp (fields of engine.stamp.FIELDS); None when the events have none."""


_STAMPS_SQL = """
    SELECT domain, CAST(stamp AS VARCHAR) AS stamp, count(DISTINCT episode_id) AS episodes
    FROM ev WHERE event = 'episode_start'
    GROUP BY domain, CAST(stamp AS VARCHAR)
    ORDER BY domain, episodes DESC
"""


def stamps(con: duckdb.DuckDBPyConnection) -> tuple[StampRow, ...]:
    rows = con.execute(_STAMPS_SQL).fetchall()
    return tuple(StampRow(domain=str(domain), episodes=int(n), stamp=_parse(raw)) for domain, raw, n in rows)


def _parse(raw: str | None) -> dict[str, Any] | None:
    if raw is None or raw == "null":
        return None
    found = json.loads(raw)
    return {f: found.get(f) for f in FIELDS} if isinstance(found, dict) else None


def _compared(stamp: dict[str, Any] | None) -> tuple[Any, ...] | None:
    return None if stamp is None else tuple(stamp.get(f) for f in COMPARED)


def differences(a: Sequence[StampRow], b: Sequence[StampRow]) -> list[str]:
    """Why runs A and B are not comparable, per domain both have (empty: comparable).
    Stamps missing on both sides (old events) are not a difference."""
    by_domain_a: dict[str, set[tuple[Any, ...] | None]] = defaultdict(set)
    by_domain_b: dict[str, set[tuple[Any, ...] | None]] = defaultdict(set)
    shown: dict[tuple[Any, ...] | None, dict[str, Any] | None] = {}
    for rows, by_domain in ((a, by_domain_a), (b, by_domain_b)):
        for row in rows:
            key = _compared(row.stamp)
            by_domain[row.domain].add(key)
            shown.setdefault(key, row.stamp)
    out = []
    for domain in sorted(by_domain_a.keys() & by_domain_b.keys()):
        side_a, side_b = by_domain_a[domain], by_domain_b[domain]
        if side_a == side_b and len(side_a) == 1:
            continue
        if side_a == {None} and side_b == {None}:
            continue
        if len(side_a) > 1 or len(side_b) > 1:
            mixed = "A" if len(side_a) > 1 else "B"
            out.append(f"{domain}: run {mixed} mixes episodes with different stamps")
            continue
        (key_a,), (key_b,) = side_a, side_b
        if key_a is None or key_b is None:
            missing = "A" if key_a is None else "B"
            out.append(f"{domain}: run {missing} has no comparability stamp (events from an older engine)")
            continue
        stamp_a, stamp_b = shown[key_a] or {}, shown[key_b] or {}
        fields = [
            f"{f} {stamp_a.get(f)!r} vs {stamp_b.get(f)!r}"
            for f in COMPARED
            if stamp_a.get(f) != stamp_b.get(f)
        ]
        out.append(f"{domain}: " + "; ".join(fields))
    return out
