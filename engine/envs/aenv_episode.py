"""One episode as the official tau2 aenv env runs it: tau2's orchestrator driven one agent
action at a time (`AgentGymEnv.step`), on the engine's local tau2 session.

The rules are tau2's orchestrator's, as the official env exposes them:

- Reset (non-solo) plays tau2's greeting (or the task history's last agent message) to the
  user; the user's opening is the first observation. A solo episode starts empty.
- Every message is one orchestrator step (a tool-result batch too), except a solo agent's
  first message; after each step that is not addressed to the environment, the step
  budget (`max_steps`) and the tool-error budget (`max_errors`) are checked.
- The episode ends on the agent's `done` (in every mode) or a message carrying the stop
  token, on the user's stop tokens, on a budget, or when a solo agent sends text (tau2's
  `agent_error`, reward 0). The ending action's reward is tau2's evaluation of the
  trajectory; every other action's is 0.0. Actions after the end change nothing and earn
  0.0.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from engine.envs.aenv_protocol import envelope, trim_observation
from engine.envs.base import Score
from engine.errors import ConfigError
from engine.trajectory import DONE_TOOL, STOP_TOKEN, Trajectory, assistant_message, tool_call
from engine.users.base import is_stop

if TYPE_CHECKING:
    from tau2.data_model.message import Message

    from engine.envs.local import LocalSession

GREETING = "Hi! How can I help you today?"
"""tau2's DEFAULT_FIRST_AGENT_MESSAGE."""


@dataclass(frozen=True)
class StepResult:
    """What one agent action produced."""

    observation: str
    """The official observation after the action (trimmed)."""
    reward: float
    done: bool
    error: bool = False
    """The tool call failed (tau2's error flag)."""
    messages: tuple[Message, ...] = ()
    """The user's messages (tool calls, their results, text) answering a text action."""


@dataclass
class ServedEpisode:
    """The episode a server holds, with the official env's counters."""

    session: LocalSession
    max_steps: int
    max_errors: int
    trajectory: Trajectory
    tau2_steps: int = 0
    """tau2's orchestrator step count."""
    errors: int = 0
    actions: int = 0
    """Agent actions taken (the official `step`)."""
    rewards: list[float] = field(default_factory=list)
    observation: str = ""
    """The raw observation (`user: ...` / `tool: ...`), kept when an action yields none."""
    done: bool = False
    termination: str | None = None
    score: Score | None = None
    opening: tuple[Message, ...] = ()
    """The user's messages answering the opening."""
    opened: bool = False
    _opening: anyio.Lock | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def open(self) -> None:
        """Play the conversation's opening (non-solo), once: tau2's greeting, or the task
        history's last agent message, to the user."""
        if self._opening is None:
            self._opening = anyio.Lock()
        async with self._opening:
            if not self.opened and not self.session.solo_mode:
                await self._open()
            self.opened = True

    @property
    def last_observation(self) -> str:
        return trim_observation(self.observation)

    @property
    def total_reward(self) -> float:
        return sum(self.rewards) if self.rewards else 0.0

    # -- agent actions ---------------------------------------------------------------

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> StepResult:
        """The agent calls one tool (`done` ends the episode)."""
        if self.done:
            return self._after_end()
        if name == DONE_TOOL:
            return await self.stop()
        call = tool_call(f"aenv_call_{next(self._ids)}", name, arguments, "assistant")
        await self._agent_says(assistant_message(
            None, [{"id": call.id, "name": name, "arguments": arguments}], solo_mode=False),
            to_env=True)
        result = await self.session.call_tool(call)
        self.trajectory.add(result)
        self.errors += bool(result.error)
        self.observation = f"tool: {result.content or ''}"
        await self._stepped()
        return self._finish_action(error=bool(result.error))

    async def send_message(self, text: str) -> StepResult:
        """The agent's text: to the user (non-solo); a solo agent's text ends the episode."""
        if self.done:
            return self._after_end()
        ending = ("agent_stop" if STOP_TOKEN in text
                  else "agent_error" if self.session.solo_mode else None)
        await self._agent_says(assistant_message(text, [], solo_mode=False), ending=ending)
        replies: tuple[Message, ...] = ()
        if not self.done:
            replies = await self._to_user(text)
        return self._finish_action(messages=replies)

    async def stop(self) -> StepResult:
        """The agent's `done`: tau2 records it as the stop message."""
        if self.done:
            return self._after_end()
        await self._agent_says(assistant_message(STOP_TOKEN, [], solo_mode=False),
                               ending="agent_stop")
        return self._finish_action()

    async def evaluate(self, termination: str) -> Score:
        """The reward of the episode as it stands, ended with `termination` if it has not
        ended yet (the engine's own budgets may end it first)."""
        if self.score is not None:
            return self.score
        return await self.session.score(list(self.trajectory.messages), termination)

    # -- the orchestrator's bookkeeping ------------------------------------------------

    async def _agent_says(self, message: Message, *, to_env: bool = False,
                          ending: str | None = None) -> None:
        first_of_solo = self.session.solo_mode and self.actions == 0 and self.tau2_steps == 0
        self.trajectory.add(message)
        if first_of_solo:  # tau2 makes it in initialize(): not a step, no budget check
            if ending is not None:
                await self._end(ending)
            return
        await self._stepped(to_env=to_env, ending=ending)

    async def _stepped(self, *, to_env: bool = False, ending: str | None = None) -> None:
        """One orchestrator step happened (`ending`: the termination it caused). As in
        tau2's run loop, a step not addressed to the environment is checked against the
        budgets, whose reasons override the step's own."""
        self.tau2_steps += 1
        reason = ending
        if not to_env:
            if self.tau2_steps >= self.max_steps:
                reason = "max_steps"
            if self.errors >= self.max_errors:
                reason = "too_many_errors"
        if reason is not None:
            await self._end(reason)

    async def _open(self) -> None:
        history = self.trajectory.messages
        if not history:
            self.trajectory.add(assistant_message(GREETING, [], solo_mode=False))
            text = GREETING
        else:
            last = history[-1]
            if last.role != "assistant" or not last.content or getattr(last, "tool_calls", None):
                raise ConfigError(f"task history ends with a {last.role} message; the server "
                                  "resumes only from an agent message")
            text = last.content
        self.opening = await self._to_user(text)

    async def _to_user(self, text: str) -> tuple[Message, ...]:
        """The user's answer: each user message is a step, each tool-result batch too."""
        replies = list(await self.session.send_to_user(text))
        played: list[Message] = []
        for i, message in enumerate(replies):
            self.trajectory.add(message)
            played.append(message)
            if message.role == "tool":
                if i + 1 == len(replies) or replies[i + 1].role != "tool":
                    await self._stepped()  # the batch goes back to the user
            elif message.tool_calls:
                await self._stepped(to_env=True)
            else:
                self.observation = f"user: {message.content or ''}"
                await self._stepped(ending="user_stop" if is_stop(message.content) else None)
            if self.done:
                break
        return tuple(played)

    async def _end(self, termination: str) -> None:
        self.done, self.termination = True, termination
        self.score = await self.session.score(list(self.trajectory.messages), termination)

    def _finish_action(self, *, error: bool = False,
                       messages: tuple[Message, ...] = ()) -> StepResult:
        self.actions += 1
        reward = self.score.reward if self.done and self.score is not None else 0.0
        self.rewards.append(reward)
        return StepResult(self.last_observation, reward, self.done, error, messages)

    def _after_end(self) -> StepResult:
        self.actions += 1
        self.rewards.append(0.0)
        return StepResult(self.last_observation, 0.0, True)

    def tool_envelope(self, result: StepResult, *, extended: bool) -> dict[str, Any]:
        out = envelope(result.observation, result.reward, result.done, self.actions)
        if extended:
            out["error"] = result.error
        return out
