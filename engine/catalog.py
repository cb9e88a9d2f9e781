"""The tau2 task catalog: domains, task sets, splits and which tasks run solo.

Task files are parsed once per (domain, split, data source) and per process; everything else in the
engine looks tasks up here, so no step of an episode ever reloads a task file.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine import taskdata
from engine.errors import ConfigError

if TYPE_CHECKING:
    from tau2.data_model.tasks import Task

DOMAINS: tuple[str, ...] = ("airline", "mock", "retail", "telecom")
DEFAULT_DOMAIN = "telecom"


@dataclass(frozen=True)
class TaskSet:
    """The tasks of one domain and split, in tau2's order."""

    domain: str
    split: str | None
    tasks: tuple[Task, ...]
    by_id: Mapping[str, Task]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tasks)


def check_domain(domain: object) -> str:
    if not isinstance(domain, str) or domain not in DOMAINS:
        raise ConfigError.choice("domain", domain, DOMAINS)
    return domain


def splits_of(domain: str, data_dir: str | None = None) -> tuple[str, ...]:
    return tuple(sorted(taskdata.splits(data_dir, check_domain(domain))))


@functools.cache
def task_set(domain: str, split: str | None = None, data_dir: str | None = None) -> TaskSet:
    """Load (once) the task set of `domain`; `split=None` is tau2's default set; `data_dir`
    None is the package's data (see engine.taskdata)."""
    tasks = taskdata.load_tasks(data_dir, check_domain(domain), split)
    return TaskSet(domain, split, tuple(tasks), {t.id: t for t in tasks})


def get_task(
    domain: str, task_id: object, split: str | None = None, data_dir: str | None = None
) -> Task:
    tasks = task_set(domain, split, data_dir)
    if not isinstance(task_id, str) or task_id not in tasks.by_id:
        shown = ", ".join(tasks.ids[:5])
        more = f" and {len(tasks.ids) - 5} more" if len(tasks.ids) > 5 else ""
        raise ConfigError(
            f"unknown task_id {task_id!r} in domain {domain!r}; expected one of "
            f"{shown}{more} (see `tau2-engine tasks --domain {domain}`)"
        )
    return tasks.by_id[task_id]


def supports_solo(task: Task) -> bool:
    """tau2's solo agent needs a ticket and no user turns in the task's history."""
    from tau2.agent.llm_agent import LLMSoloAgent

    return task.ticket is not None and bool(LLMSoloAgent.check_valid_task(task))


def default_solo_mode(task: Task) -> bool:
    return supports_solo(task)
