"""Re-grading recorded episodes against other task definitions (`tau2-engine rescore`).

As tau2's `evaluate-trajs --fresh-tasks`: each completed episode's trajectory is rebuilt
from its events (engine.trajectory) and scored again, by the engine's scorer, against the
task of the same id in another data source (engine.taskdata), with the NL-assertion judge
for tasks scored on NL assertions. The recorded events are not changed.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from engine import scoring, stamp, taskdata
from engine.config import Endpoint
from engine.errors import ConfigError, EngineError
from engine.events import read_events
from engine.judge import Judge
from engine.trajectory import messages_from_events, now

if TYPE_CHECKING:
    from rich.console import Console
    from tau2.data_model.tasks import Task

JUDGE_CALLS_IN_FLIGHT = 16


@dataclass(frozen=True, kw_only=True)
class Rescored:
    """One recorded episode graded again."""

    episode_id: str
    domain: str
    task_id: str
    sample: int
    recorded_reward: float
    reward: float | None
    """The new reward (None when it could not be computed: see `error`)."""
    reward_info: dict[str, Any] | None = None
    error: str | None = None

    @property
    def changed(self) -> bool:
        return self.reward is not None and abs(self.reward - self.recorded_reward) > 1e-9


@dataclass(frozen=True, kw_only=True)
class Recorded:
    """A completed episode as its events hold it."""

    episode_id: str
    domain: str
    task_id: str
    sample: int
    solo_mode: bool
    reward: float
    termination_reason: str
    events: tuple[Mapping[str, Any], ...]


def recorded_episodes(path: Path) -> list[Recorded]:
    """The completed episodes of an events file (the latest attempt of each sample)."""
    if not path.is_file():
        raise ConfigError(f"no such events file: {str(path)!r}")
    by_episode: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in read_events(path):
        if "episode_id" in event:
            by_episode[event["episode_id"]].append(event)
    latest: dict[tuple[str, str, int], Recorded] = {}
    for episode_id, events in by_episode.items():
        names = {e["event"]: e for e in events}
        start, end, reward = names.get("episode_start"), names.get("episode_end"), names.get("reward")
        if start is None or end is None or reward is None or end["status"] != "completed":
            continue
        latest[(end["domain"], end["task_id"], end["sample"])] = Recorded(
            episode_id=episode_id,
            domain=end["domain"],
            task_id=end["task_id"],
            sample=end["sample"],
            solo_mode=bool(start["solo_mode"]),
            reward=float(end["reward"]),
            termination_reason=reward["termination_reason"],
            events=tuple(events),
        )
    return list(latest.values())


@functools.cache
def _tasks(data_dir: str | None, domain: str) -> dict[str, Task]:
    return {task.id: task for task in taskdata.load_all_tasks(data_dir, domain)}


def score(episode: Recorded, task: Task, data_dir: str | None, nl_checks: Any) -> dict[str, Any]:
    """The engine's scorer on the recorded trajectory against `task` (blocking)."""
    from tau2.data_model.simulation import SimulationRun

    simulation = SimulationRun(
        id=episode.episode_id,
        task_id=task.id,
        start_time=now(),
        end_time=now(),
        duration=0.0,
        termination_reason=episode.termination_reason,
        messages=messages_from_events(episode.events, solo_mode=episode.solo_mode),
    )
    info = scoring.evaluate_simulation(
        simulation, task, episode.solo_mode, episode.domain, data_dir=data_dir, nl_checks=nl_checks
    )
    return info.model_dump(mode="json")


async def rescore_episode(
    episode: Recorded,
    data_dir: str | None,
    judge_endpoint: Endpoint | None,
    judge: Judge,
    cpu: anyio.CapacityLimiter,
) -> Rescored:
    def result(
        reward: float | None, info: dict[str, Any] | None = None, error: str | None = None
    ) -> Rescored:
        return Rescored(
            episode_id=episode.episode_id,
            domain=episode.domain,
            task_id=episode.task_id,
            sample=episode.sample,
            recorded_reward=episode.reward,
            reward=reward,
            reward_info=info,
            error=error,
        )

    task = _tasks(data_dir, episode.domain).get(episode.task_id)
    if task is None:
        return result(None, error=f"task {episode.task_id!r} is not in the new task data")
    nl_checks = None
    if scoring.needs_judge(task):
        if judge_endpoint is None:
            return result(None, error="scored on NL assertions and no judge is configured")
        messages = messages_from_events(episode.events, solo_mode=episode.solo_mode)
        try:
            nl_checks = await judge.verdicts(judge_endpoint, task, messages)
        except EngineError as exc:
            return result(None, error=f"{type(exc).__name__}: {exc}")
    try:
        info = await anyio.to_thread.run_sync(score, episode, task, data_dir, nl_checks, limiter=cpu)
    except Exception as exc:  # a trajectory the new data cannot replay: reported per episode
        return result(None, error=f"{type(exc).__name__}: {exc}"[:500])
    return result(float(info["reward"]), info)


@dataclass(frozen=True, kw_only=True)
class RescoreReport:
    """The episodes of one events file graded against one data source."""

    events: str
    data_source: str
    data_hashes: dict[str, str]
    tau2_version: str
    judge_model: str | None
    episodes: list[Rescored]


async def rescore_file(path: Path, data_dir: str | None, judge_endpoint: Endpoint | None) -> RescoreReport:
    episodes = await anyio.to_thread.run_sync(recorded_episodes, path)
    domains = sorted({e.domain for e in episodes})
    hashes = {d: await anyio.to_thread.run_sync(taskdata.data_hash, data_dir, d) for d in domains}
    judge = Judge(JUDGE_CALLS_IN_FLIGHT)
    cpu = anyio.CapacityLimiter(2)
    slots = anyio.Semaphore(JUDGE_CALLS_IN_FLIGHT)
    results: dict[str, Rescored] = {}

    async def one(episode: Recorded) -> None:
        async with slots:
            results[episode.episode_id] = await rescore_episode(episode, data_dir, judge_endpoint, judge, cpu)

    try:
        async with anyio.create_task_group() as tg:
            for episode in episodes:
                tg.start_soon(one, episode)
    finally:
        with anyio.CancelScope(shield=True):
            await judge.aclose()
    return RescoreReport(
        events=str(path),
        data_source=data_dir or taskdata.PACKAGE,
        data_hashes=hashes,
        tau2_version=stamp.tau2_version(),
        judge_model=judge_endpoint.model if judge_endpoint is not None else None,
        episodes=[results[e.episode_id] for e in episodes],
    )


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summary(report: RescoreReport) -> dict[str, Any]:
    scored = [e for e in report.episodes if e.reward is not None]
    return {
        "episodes": len(report.episodes),
        "rescored": len(scored),
        "errors": len(report.episodes) - len(scored),
        "changed": sum(1 for e in scored if e.changed),
        "recorded_mean_reward": _mean([e.recorded_reward for e in scored]),
        "mean_reward": _mean([e.reward for e in scored if e.reward is not None]),
    }


def print_rescored(report: RescoreReport, out: Console, *, as_json: bool) -> None:
    if as_json:
        import orjson

        body = {
            **{k: v for k, v in asdict(report).items() if k != "episodes"},
            "summary": summary(report),
            "episodes": [{**asdict(e), "changed": e.changed} for e in report.episodes],
        }
        out.file.write(orjson.dumps(body).decode() + "\n")
        return
    from rich.table import Table

    totals = summary(report)
    out.print(
        f"rescored {totals['rescored']} of {totals['episodes']} completed episodes of {report.events} "
        f"on {report.data_source} ({', '.join(f'{d} {h[:19]}' for d, h in report.data_hashes.items())})"
    )
    if totals["rescored"]:
        out.print(
            f"mean reward {totals['recorded_mean_reward']:.4f} recorded -> {totals['mean_reward']:.4f} "
            f"rescored; {totals['changed']} changed"
        )
    table = Table(title="changed or not rescored")
    for column in ("domain", "task", "sample", "recorded", "rescored", "note"):
        table.add_column(column)
    for e in report.episodes:
        if e.changed or e.reward is None:
            shown = "-" if e.reward is None else f"{e.reward:.2f}"
            recorded = f"{e.recorded_reward:.2f}"
            table.add_row(e.domain, e.task_id, str(e.sample), recorded, shown, e.error or "")
    if table.row_count:
        out.print(table)
