"""Errors raised by the engine.

::

    EngineError
    ├── ConfigError (also ValueError)   bad CLI flag, `data` field or config value
    ├── EnvError                         environment backend failed (infra)
    ├── ModelError                       model endpoint failed (infra_error)
    │   └── EndpointRejected             401/403/404: bad key or unknown model; the run stops
    ├── JudgeError                       NL-assertion judge missing, or failed (infra_error)
    ├── AgentMisbehaved                  the policy's own failure (agent_error, never retried)
    │   ├── ContextOverflow              the conversation outgrew the model's context window
    │   ├── EmptyMessage                 a reply with neither text nor tool calls
    │   ├── TextInSolo                   a solo agent answered in text instead of a tool call
    │   ├── TooManyToolErrors            tau2's tool-error budget (max_errors) ran out
    │   └── ScoringFailed                tau2's evaluator raised on the finished trajectory
    ├── StepBudgetExhausted              tau2's max_steps reached (status max_steps)
    └── EpisodeDiscarded                 AReaL hook: the episode must not be trained on
        (infra_error, timeout, cancelled); carries the EpisodeResult

Every one of them survives a pickle round trip: AReaL's subprocess mode sends what a
workflow raises back through a process pool, and an exception that cannot be rebuilt
there breaks the pool for every later episode.
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
    """The model endpoint failed: a transient failure past the retry budget, or an answer
    that is nobody's policy's fault (e.g. a 400 that is not a context overflow)."""


class EndpointRejected(ModelError):
    """The endpoint refused the run itself (401, 403, 404: a bad key, an unknown model or
    path). Every other episode would fail the same way, so the run stops at the first."""


class JudgeError(EngineError):
    """A task needs the NL-assertion judge and none is configured, or its reply was unusable."""


class AgentMisbehaved(EngineError):
    """The policy produced output the episode cannot continue from. Subclasses name the
    cause; their class name is the episode's `error_type`."""


class ContextOverflow(AgentMisbehaved):
    """The conversation plus the completion budget no longer fit the model's context
    window: the policy's own runaway, so it is trained on (reward 0), never retried."""


class EmptyMessage(AgentMisbehaved):
    """The agent replied with neither content nor tool calls (tau2's
    `AssistantMessage.validate` rejects such a message), also after re-asking."""


class TextInSolo(AgentMisbehaved):
    """A solo agent answered in text without stopping: tau2 ends such a run `agent_error`."""


class TooManyToolErrors(AgentMisbehaved):
    """The agent's tool calls failed `max_errors` times (tau2's too_many_errors)."""


class ScoringFailed(AgentMisbehaved):
    """tau2's evaluator raised on the trajectory the agent left (stock tau2 records such a
    run as an agent_error with reward 0)."""


class StepBudgetExhausted(EngineError):
    """The episode used its `max_steps` (tau2's max_steps termination; status max_steps)."""


class EpisodeDiscarded(EngineError):
    """Raised to AReaL for episodes whose reward must not be trained on."""

    def __init__(self, result: EpisodeResult) -> None:
        super().__init__(
            f"episode {result.episode_id} ({result.domain}/{result.task_id}) ended "
            f"{result.status}: {result.error or 'no detail'}"
        )
        self.result = result

    def __reduce__(self) -> tuple[type[EpisodeDiscarded], tuple[EpisodeResult]]:
        return (type(self), (self.result,))
