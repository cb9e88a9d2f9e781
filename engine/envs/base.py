"""The protocol every environment backend implements.

The episode loop talks only to this: it never knows whether tau2 runs in-process, in a
local aenv server or in a remote AEnvironment sandbox.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from tau2.data_model.message import Message, ToolCall, ToolMessage
    from tau2.data_model.simulation import NLAssertionCheck
    from tau2.data_model.tasks import Task

    from engine.config import EpisodeSpec


@dataclass(frozen=True)
class ToolSchema:
    """A tool offered to the agent: tau2's own name and JSON schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class Score:
    """The reward of an episode and tau2's breakdown of it."""

    reward: float
    reward_info: dict[str, Any]


class EnvSession(Protocol):
    """One episode's environment: tools, the user (non-solo) and the reward."""

    @property
    def task(self) -> Task: ...

    @property
    def solo_mode(self) -> bool: ...

    @property
    def system_prompt(self) -> str: ...

    @property
    def tools(self) -> Sequence[ToolSchema]: ...

    @property
    def history(self) -> Sequence[Message]:
        """The task's initial message history (already applied to the environment)."""
        ...

    @property
    def tool_calls_wait(self) -> bool:
        """A tool call waits on something outside the event loop (a remote environment):
        the episode gives up its turn at the loop meanwhile (engine.compute)."""
        ...

    @property
    def user_replies_wait(self) -> bool:
        """The user's reply waits on something outside the event loop (an LLM)."""
        ...

    async def call_tool(self, call: ToolCall) -> ToolMessage:
        """Execute one agent tool call; tool errors come back as error tool messages."""
        ...

    async def send_to_user(self, text: str) -> list[Message]:
        """Deliver the agent's text; return the user's messages (tool calls, results, text)."""
        ...

    async def score(
        self,
        trajectory: Sequence[Message],
        termination: str,
        nl_checks: Sequence[NLAssertionCheck] | None = None,
    ) -> Score:
        """tau2's evaluation of the episode's trajectory; `nl_checks`: the judge's verdicts
        on the task's NL assertions (engine.judge), when its reward depends on them."""
        ...


class EnvBackend(Protocol):
    name: str

    def session(self, spec: EpisodeSpec) -> AbstractAsyncContextManager[EnvSession]:
        """Open an environment for `spec`, reset to its task; released on exit."""
        ...

    async def aclose(self) -> None:
        """Release everything the backend holds (servers, pools)."""
        ...
