"""--resume: which episodes of an events file are already done.

An episode is identified across runs by (domain, task_id, sample, seed, policy); it is done
when its latest `episode_end` says `completed`. A truncated last line is tolerated.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from engine.config import EpisodeSpec
from engine.errors import ConfigError
from engine.events import read_events

EpisodeKey = tuple[str, str, int, int, str]


def completed_keys(path: str | Path) -> set[EpisodeKey]:
    path = Path(path)
    if not path.exists():
        return set()
    latest: dict[EpisodeKey, str] = {}
    try:
        for event in read_events(path):
            if event.get("event") != "episode_end":
                continue
            key = (event["domain"], event["task_id"], event["sample"], event["seed"], event["policy"])
            latest[key] = event["status"]
    except OSError as exc:
        raise ConfigError(f"cannot read events file {str(path)!r} to resume: {exc.strerror}") from exc
    except KeyError as exc:
        raise ConfigError(
            f"events file {str(path)!r} has an episode_end without {exc}; not an engine events file"
        ) from exc
    return {key for key, status in latest.items() if status == "completed"}


def remaining(specs: Iterable[EpisodeSpec], done: set[EpisodeKey]) -> list[EpisodeSpec]:
    return [spec for spec in specs if spec.key not in done]
