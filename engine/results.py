"""Episode outcomes and run summaries."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    COMPLETED = "completed"
    MAX_STEPS = "max_steps"
    AGENT_ERROR = "agent_error"
    INFRA_ERROR = "infra_error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


DISCARDED: frozenset[Status] = frozenset({Status.INFRA_ERROR, Status.TIMEOUT, Status.CANCELLED})
"""Statuses whose reward is not a judgement of the policy."""


@dataclass(frozen=True, kw_only=True)
class EpisodeResult:
    """What one episode produced."""

    episode_id: str
    domain: str
    task_id: str
    sample: int
    reward: float
    status: Status
    reward_info: Mapping[str, Any] | None = None
    turns: int = 0
    tool_calls: int = 0
    model_calls: int = 0
    duration_s: float = 0.0
    error: str | None = None
    error_type: str | None = None
    seed: int = 0
    policy: str = "oracle"
    attempt: int = 0
    termination_reason: str | None = None
    queue_wait_s: float = 0.0
    """Time queued for an environment or model slot (not counted against the deadline)."""


def is_success(reward: float) -> bool:
    """tau2's success criterion: reward 1 (within float tolerance)."""
    return abs(reward - 1.0) <= 1e-6


def pass_hat_k(results: Iterable[EpisodeResult]) -> dict[int, float]:
    """tau2's pass^k: mean over tasks of C(c, k) / C(n, k), k = 1..min samples per task.

    Episodes with a discarded status (infra_error, timeout, cancelled) are left out.
    """
    trials: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in results:
        if r.status not in DISCARDED:
            trials[(r.domain, r.task_id)].append(is_success(r.reward))
    if not trials:
        return {}
    k_max = min(len(v) for v in trials.values())
    out: dict[int, float] = {}
    for k in range(1, k_max + 1):
        values = [math.comb(sum(v), k) / math.comb(len(v), k) for v in trials.values()]
        out[k] = sum(values) / len(values)
    return out


def outcome(result: EpisodeResult) -> EpisodeResult:
    """What a run summary keeps of an episode: its outcome without the reward breakdown
    (which is in the events), so a long run's summary stays small."""
    return result if result.reward_info is None else replace(result, reward_info=None)


@dataclass
class RunSummary:
    """Aggregates results as they finish. A retried episode counts once, by its last
    attempt; each is kept as its `outcome` (no reward breakdown)."""

    by_episode: dict[tuple[str, str, int], EpisodeResult] = field(default_factory=dict)
    attempts: int = 0
    duration_s: float = 0.0
    stopped_by: EpisodeResult | None = None
    """The episode whose failure stopped the run (the endpoint rejected it), if any."""

    def add(self, result: EpisodeResult) -> None:
        self.attempts += 1
        self.by_episode[(result.domain, result.task_id, result.sample)] = outcome(result)

    @property
    def results(self) -> list[EpisodeResult]:
        return list(self.by_episode.values())

    @property
    def statuses(self) -> Counter[str]:
        return Counter(r.status.value for r in self.by_episode.values())

    @property
    def episodes(self) -> int:
        return len(self.results)

    @property
    def mean_reward(self) -> float:
        scored = [r.reward for r in self.results if r.status not in DISCARDED]
        return sum(scored) / len(scored) if scored else 0.0

    @property
    def pass_hat_k(self) -> dict[int, float]:
        return pass_hat_k(self.results)

    @property
    def all_infra_errors(self) -> bool:
        """Every episode ended infra_error: the run measured nothing about the policy."""
        return bool(self.by_episode) and all(
            r.status is Status.INFRA_ERROR for r in self.by_episode.values()
        )

    @property
    def episodes_per_s(self) -> float:
        return self.episodes / self.duration_s if self.duration_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "episodes": self.episodes,
            "attempts": self.attempts,
            "statuses": dict(self.statuses),
            "mean_reward": self.mean_reward,
            "pass_hat_k": {str(k): v for k, v in self.pass_hat_k.items()},
            "duration_s": self.duration_s,
            "episodes_per_s": self.episodes_per_s,
            "stopped_by": None
            if self.stopped_by is None
            else {"episode_id": self.stopped_by.episode_id, "error": self.stopped_by.error},
        }
