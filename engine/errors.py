"""Errors raised by the engine.

::

    EngineError
    ├── ConfigError (also ValueError)   bad CLI flag, `data` field or config value
    ├── EnvError                         environment backend failed (infra)
    ├── ModelError                       model endpoint failed after retries (infra)
    ├── AgentMisbehaved                  policy output unusable past recovery
    └── EpisodeDiscarded                 AReaL hook: the episode must not be trained on
        (infra_error, timeout, cancelled); carries the EpisodeResult
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.results import EpisodeResult


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


class ConfigError(EngineError, ValueError):
    """A configuration value is invalid; the message names it and the valid choices."""

    @classmethod
    def choice(cls, field: str, value: object, valid: Iterable[object]) -> ConfigError:
        choices = ", ".join(str(v) for v in sorted(valid, key=str))
        return cls(f"unknown {field} {value!r}; expected one of {choices}")


class EnvError(EngineError):
    """The environment backend failed (crash, connection loss, bad reply)."""


class ModelError(EngineError):
    """The model endpoint failed after its retry budget."""


class AgentMisbehaved(EngineError):
    """The policy produced output the episode cannot continue from."""


class EpisodeDiscarded(EngineError):
    """Raised to AReaL for episodes whose reward must not be trained on."""

    def __init__(self, result: EpisodeResult) -> None:
        super().__init__(
            f"episode {result.episode_id} ({result.domain}/{result.task_id}) ended "
            f"{result.status}: {result.error or 'no detail'}"
        )
        self.result = result
