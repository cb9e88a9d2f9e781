"""Per-task reward deltas between two runs (``--compare A B``)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.analysis.metrics import Summary, TaskRow
from engine.analysis.stamps import differences

_SAME = 1e-9


@dataclass(frozen=True, kw_only=True)
class TaskDelta:
    """Mean reward of one task in run A and run B."""

    domain: str
    """Domain name."""
    task_id: str
    """tau2 task id."""
    a_samples: int
    """Counted samples in A (0 when A lacks the task)."""
    a_mean_reward: float | None
    """Mean reward in A."""
    b_samples: int
    """Counted samples in B (0 when B lacks the task)."""
    b_mean_reward: float | None
    """Mean reward in B."""
    delta: float | None
    """B minus A; None unless both runs have the task."""


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """How run B differs from run A, task by task."""

    a_files: tuple[str, ...]
    """Events files of run A."""
    b_files: tuple[str, ...]
    """Events files of run B."""
    a_mean_reward: float | None
    """Mean reward of A's counted episodes."""
    b_mean_reward: float | None
    """Mean reward of B's counted episodes."""
    common_tasks: int
    """Tasks with counted episodes in both runs."""
    mean_task_delta: float | None
    """Mean of the per-task deltas over common tasks."""
    improved: int
    """Common tasks whose mean reward rose."""
    regressed: int
    """Common tasks whose mean reward fell."""
    unchanged: int
    """Common tasks with equal mean reward."""
    only_a: int
    """Tasks only A has."""
    only_b: int
    """Tasks only B has."""
    tasks: tuple[TaskDelta, ...]
    """Per-task rows: biggest regressions first, tasks missing on one side last."""
    stamp_differences: tuple[str, ...] = ()
    """Why the rewards of A and B are not comparable (different task data, tau2 version,
    control, user or judge: engine.stamp), per domain; empty when they are."""

    @property
    def comparable(self) -> bool:
        return not self.stamp_differences


def compare_runs(a: Summary, b: Summary) -> Comparison:
    """Compare two summaries task by task (counted episodes only)."""
    rows_a = _by_task(a.tasks)
    rows_b = _by_task(b.tasks)
    deltas = []
    for key in sorted(rows_a.keys() | rows_b.keys()):
        ra, rb = rows_a.get(key), rows_b.get(key)
        mean_a = ra.mean_reward if ra else None
        mean_b = rb.mean_reward if rb else None
        deltas.append(
            TaskDelta(
                domain=key[0],
                task_id=key[1],
                a_samples=ra.samples if ra else 0,
                a_mean_reward=mean_a,
                b_samples=rb.samples if rb else 0,
                b_mean_reward=mean_b,
                delta=None if mean_a is None or mean_b is None else mean_b - mean_a,
            )
        )
    common = [d.delta for d in deltas if d.delta is not None]
    deltas.sort(key=lambda d: (d.delta is None, d.delta or 0.0, d.domain, d.task_id))
    return Comparison(
        a_files=a.files,
        b_files=b.files,
        a_mean_reward=a.reward.mean,
        b_mean_reward=b.reward.mean,
        common_tasks=len(common),
        mean_task_delta=sum(common) / len(common) if common else None,
        improved=sum(1 for d in common if d > _SAME),
        regressed=sum(1 for d in common if d < -_SAME),
        unchanged=sum(1 for d in common if abs(d) <= _SAME),
        only_a=sum(1 for d in deltas if d.a_mean_reward is not None and d.b_mean_reward is None),
        only_b=sum(1 for d in deltas if d.b_mean_reward is not None and d.a_mean_reward is None),
        tasks=tuple(deltas),
        stamp_differences=tuple(differences(a.stamps, b.stamps)),
    )


def _by_task(rows: tuple[TaskRow, ...]) -> dict[tuple[str, str], TaskRow]:
    return {(r.domain, r.task_id): r for r in rows if r.samples > 0}
