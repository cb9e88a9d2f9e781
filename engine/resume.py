"""--resume: which planned episodes an events file has already done.

A planned episode matches the recorded ones with its fingerprint (engine.fingerprint: every
spec field that changes the outcome), so a resume with another model, sampling, split, step
budget or task data reruns everything. It is done when the latest `episode_end` with that
fingerprint has a status the policy produced (completed, max_steps, agent_error): rerunning
those would re-sample the policy's failures and bias the results upward. infra_error,
timeout and cancelled are rerun; `retry_policy_failures` also reruns max_steps and
agent_error.

Files written before fingerprints existed match on (domain, task_id, sample, seed, policy)
instead, which cannot tell models or settings apart. A truncated last line is tolerated.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine import fingerprint
from engine.config import EpisodeSpec
from engine.errors import ConfigError
from engine.events import read_events

EpisodeKey = tuple[str, str, int, int, str]
"""The identity of an episode in events files without fingerprints."""

POLICY_OUTCOMES: tuple[str, ...] = ("completed", "max_steps", "agent_error")
"""Statuses the policy produced: done for --resume."""


@dataclass(frozen=True, kw_only=True)
class Recorded:
    """The latest status of each episode recorded in an events file."""

    by_fingerprint: dict[str, str] = field(default_factory=dict)
    """Latest status per fingerprint."""
    by_key: dict[EpisodeKey, str] = field(default_factory=dict)
    """Latest status per old key, from `episode_end` lines without a fingerprint."""


def recorded(path: str | Path) -> Recorded:
    """The latest status of every episode in the events file (none if it does not exist)."""
    path = Path(path)
    out = Recorded()
    if not path.exists():
        return out
    try:
        for event in read_events(path):
            if event.get("event") != "episode_end":
                continue
            if isinstance(event.get("fingerprint"), str):
                out.by_fingerprint[event["fingerprint"]] = event["status"]
            else:
                key = (event["domain"], event["task_id"], event["sample"], event["seed"], event["policy"])
                out.by_key[key] = event["status"]
    except OSError as exc:
        raise ConfigError(f"cannot read events file {str(path)!r} to resume: {exc.strerror}") from exc
    except KeyError as exc:
        raise ConfigError(
            f"events file {str(path)!r} has an episode_end without {exc}; not an engine events file"
        ) from exc
    return out


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What --resume leaves to run."""

    todo: list[EpisodeSpec]
    """Planned episodes still to run, in plan order."""
    done: collections.Counter[str]
    """Skipped episodes by recorded status."""
    by_old_key: int
    """Of those, how many matched on the old key."""
    old_records: int
    """Episodes of the file recorded without a fingerprint (an older engine)."""


def plan(specs: Iterable[EpisodeSpec], found: Recorded, *, retry_policy_failures: bool = False) -> Plan:
    """Split `specs` into the ones to run and the ones `found` already has done (blocking: the
    fingerprint needs each data source's content hash)."""
    finished = ("completed",) if retry_policy_failures else POLICY_OUTCOMES
    todo: list[EpisodeSpec] = []
    done: collections.Counter[str] = collections.Counter()
    by_old_key = 0
    for spec in specs:
        status = found.by_fingerprint.get(fingerprint.of_spec(spec)) if found.by_fingerprint else None
        legacy = status is None and bool(found.by_key)
        if legacy:
            status = found.by_key.get(spec.key)
        if status in finished:
            done[status] += 1
            by_old_key += legacy
        else:
            todo.append(spec)
    return Plan(todo=todo, done=done, by_old_key=by_old_key, old_records=len(found.by_key))


def message(result: Plan, planned: int, path: str | Path) -> str:
    """The one line --resume prints about what it skips."""
    skipped = sum(result.done.values())
    text = f"resume: {skipped} of {planned} episodes already done in {path}"
    if result.done:
        text += " (" + ", ".join(f"{s} {result.done[s]}" for s in POLICY_OUTCOMES if result.done[s]) + ")"
    if result.old_records:
        text += (
            f"; {result.old_records} episodes in it have no fingerprint (an older engine): matched"
            f" on (domain, task, sample, seed, policy) only, not on model or settings"
            f" ({result.by_old_key} skipped so)"
        )
    return text
