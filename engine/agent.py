"""The Agents SDK side of one episode: the agent, its tools bound to the environment
session, and the policy model wrapped so every call becomes a `turn` event and a tau2
trajectory message.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage

from engine.compute import ComputeTurn
from engine.config import EpisodeSpec
from engine.deadline import Deadline
from engine.envs.base import EnvSession, ToolSchema
from engine.errors import ContextOverflow, EmptyMessage, EngineError
from engine.events import EventLog, emit_in_episode
from engine.retry import call_with_retries, retry_events, retry_policy
from engine.sdk import (
    AgentLoop,
    InputItem,
    Model,
    ModelResponse,
    ModelSettings,
    Tool,
    WholeResponseModel,
    function_tool,
)
from engine.think import THINK_REPLY, THINK_TOOL, think_schema
from engine.trajectory import (
    DONE_TOOL,
    STOP_TOKEN,
    Trajectory,
    assistant_message,
    calls_of,
    parse_arguments,
    tool_call,
)

if TYPE_CHECKING:
    from tau2.data_model.message import Message


class EpisodeStop(Exception):
    """Ends the agent loop with a tau2 termination reason (max_steps, too_many_errors)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class EpisodeState:
    """Counters of one episode, shared by the model wrapper, the tools and the loop."""

    spec: EpisodeSpec
    trajectory: Trajectory
    events: EventLog
    steps: int = 0
    tool_errors: int = 0
    turns: int = 0
    tool_calls: int = 0
    model_calls: int = 0
    """Requests sent to the policy model (not idempotent for a recording proxy such as AReaL's)."""
    context_tokens: int = 0
    """Prompt plus completion tokens of the last model call, as the endpoint reported them."""
    stopped: bool = False
    failure: EngineError | None = None
    """Why the conversation ended agent_error, when it ended on its own (e.g. TextInSolo)."""
    skipped_calls: set[str] = field(default_factory=set)
    deadline: Deadline | None = None
    """The episode's deadline (waits for a model slot are not counted against it)."""
    compute: ComputeTurn = field(default_factory=ComputeTurn)
    """The episode's turn at the event loop (engine.compute), given up while it waits on the
    model, an LLM user or a remote tool call."""

    def check_budget(self) -> None:
        """tau2's orchestrator checks: step and tool-error budgets, before a new message."""
        if self.steps >= self.spec.max_steps:
            raise EpisodeStop("max_steps")
        if self.tool_errors >= self.spec.max_errors:
            raise EpisodeStop("too_many_errors")

    def record_turn(
        self,
        message: Message,
        *,
        latency_s: float,
        usage: dict[str, int] | None,
        model: str | None,
        history: bool = False,
    ) -> None:
        idx = self.trajectory.add(message)
        self.turns += 1
        self.steps += 1
        content = message.content
        self.events.emit(
            "turn",
            role=message.role,
            turn=idx,
            content=content,
            tool_calls=calls_of(message),
            latency_s=latency_s,
            usage=usage,
            model=model,
            stop=content is not None and STOP_TOKEN in content,
            history=history,
        )

    def record_tool(
        self,
        call_name: str,
        arguments: dict[str, Any],
        message: Message,
        *,
        latency_s: float,
        history: bool = False,
    ) -> None:
        idx = self.trajectory.add(message)
        self.tool_calls += 1
        error = bool(getattr(message, "error", False))
        if error:
            self.tool_errors += 1
        self.events.emit(
            "tool_call",
            call_id=message.id,
            name=call_name,
            arguments=arguments,
            result=message.content,
            error=error,
            latency_s=latency_s,
            requestor=message.requestor,
            turn=idx,
            history=history,
        )


def _text_of(item: ResponseOutputMessage) -> str:
    return "".join(getattr(part, "text", "") or "" for part in item.content)


EMPTY_REPLY_RETRIES = 3
"""Times an empty reply is asked again before the episode ends agent_error (tau2's
DEFAULT_MAX_RETRIES, which its generate() spends on empty replies)."""


def _is_empty(response: ModelResponse) -> bool:
    """No tool call and no text but whitespace: what tau2's AssistantMessage.validate rejects."""
    for item in response.output:
        if isinstance(item, ResponseFunctionToolCall):
            return False
        if isinstance(item, ResponseOutputMessage) and _text_of(item).strip():
            return False
    return True


class ObservedModel(WholeResponseModel):
    """Wraps the policy model: budget checks, the model-call limiter, `turn` events."""

    def __init__(
        self, inner: Model, state: EpisodeState, limiter: anyio.CapacityLimiter, model_name: str | None
    ) -> None:
        self.inner = inner
        self.state = state
        self.limiter = limiter
        self.model_name = model_name

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[InputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: Any,
        handoffs: list[Any],
        tracing: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        self.state.check_budget()
        model_settings = within_budget(model_settings, self.state)
        endpoint = self.state.spec.policy.endpoint

        async def attempt() -> tuple[ModelResponse, float]:
            self.state.model_calls += 1
            slot: AbstractAsyncContextManager[Any] = (
                self.state.deadline.slot(self.limiter) if self.state.deadline else self.limiter
            )
            async with slot:
                started = time.perf_counter()
                response = await self.inner.get_response(
                    system_instructions,
                    input,
                    model_settings,
                    tools,
                    output_schema,
                    handoffs,
                    tracing,
                    **kwargs,
                )
                return response, time.perf_counter() - started

        for asked in range(EMPTY_REPLY_RETRIES + 1):
            async with self.state.compute.waiting():
                response, latency = await call_with_retries(
                    attempt, retry_policy(endpoint), what="model call", on_retry=retry_events("model_call")
                )
            if not _is_empty(response):
                break
            if asked == EMPTY_REPLY_RETRIES:
                raise EmptyMessage(
                    f"the agent's reply had neither text nor tool calls, {asked + 1} times in a row "
                    "(tau2's AssistantMessage.validate rejects such a message)"
                )
            # tau2's generate() asks again after an empty reply, up to its retry budget
            emit_in_episode(
                "retry",
                attempt=asked,
                error_type=EmptyMessage.__name__,
                error="empty reply (no text, no tool calls): asking again",
                backoff_s=0.0,
                scope="model_call",
            )
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for item in response.output:
            if isinstance(item, ResponseFunctionToolCall):
                calls.append(
                    {"id": item.call_id, "name": item.name, "arguments": parse_arguments(item.arguments)}
                )
            elif isinstance(item, ResponseOutputMessage):
                texts.append(_text_of(item))
        if self.state.spec.think_tool:
            thoughts = [c for c in calls if c["name"] == THINK_TOOL]
            calls = [c for c in calls if c["name"] != THINK_TOOL]
            if thoughts and not calls and not "".join(texts):
                self.state.steps += 1  # a tau2 step, as in AReaL's example: bounds think loops
                return response
        message = assistant_message("".join(texts) or None, calls, solo_mode=self.state.spec.solo_mode)
        if message.content is not None and STOP_TOKEN in message.content:
            self.state.stopped = True
            # tau2 drops every other call of a stop message; don't execute them either
            self.state.skipped_calls.update(c["id"] for c in calls)
        usage = response.usage
        if usage.total_tokens:
            self.state.context_tokens = usage.total_tokens
        self.state.record_turn(
            message,
            latency_s=latency,
            usage=(
                {
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                    "total_tokens": usage.total_tokens,
                }
                if usage.total_tokens
                else None
            ),
            model=self.model_name,
        )
        if message.tool_calls:
            self.state.steps += 1  # the environment's reply to these calls is one tau2 step
        return response


class EpisodeClosed(EngineError):
    """A tool call of an episode whose conversation has ended (its environment is released)."""


TOOL_DRAIN_S = 5.0
"""How long an ended conversation waits for its cancelled tool calls to finish."""


@dataclass
class EpisodeTools:
    """What the agent's tools act on: the Runner's context object of one episode. Tools
    themselves are shared by every episode with the same tool list.

    Every tool call runs inside the episode's scope. The SDK runs the calls of one message
    as tasks of its own and, when one raises, does not cancel the others (0.4.2's
    asyncio.gather): `close()` cancels and awaits such stragglers before the episode is
    scored, ends and releases its environment, and a call that starts later fails at once."""

    session: EnvSession
    state: EpisodeState
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    """Tools of one message run one at a time, in call order, as in tau2."""
    closed: bool = False
    sealed: bool = False
    """The conversation ended and close() has returned: nothing of this episode happens now."""
    _running: set[anyio.CancelScope] = field(default_factory=set)
    _drained: anyio.Event = field(default_factory=anyio.Event)

    @contextlib.contextmanager
    def call_scope(self) -> Iterator[None]:
        """One tool call, cancelled by `close()`."""
        if self.closed:
            raise EpisodeClosed("the episode's conversation has ended; its tool calls are not run")
        with anyio.CancelScope() as scope:
            self._running.add(scope)
            try:
                yield
            finally:
                self._running.discard(scope)
                if self.closed and not self._running:
                    self._drained.set()
        if scope.cancelled_caught:
            raise EpisodeClosed("the episode's conversation ended while this tool call ran")

    def check_open(self) -> None:
        if self.sealed:
            raise EpisodeClosed("the episode has ended; this tool call's result is dropped")

    async def close(self) -> None:
        """End the conversation's tool calls: cancel those still running and wait for them
        (shielded, at most TOOL_DRAIN_S)."""
        self.closed = True
        try:
            if not self._running:
                return
            for scope in list(self._running):
                scope.cancel()
            with anyio.CancelScope(shield=True), anyio.move_on_after(TOOL_DRAIN_S):
                await self._drained.wait()
        finally:
            self.sealed = True


async def _invoke(episode: EpisodeTools, call_id: str, name: str, raw_arguments: str) -> str:
    """Every tool call of the agent, to a tool it has or to a name the model made up (the
    environment answers those with tau2's error)."""
    state = episode.state
    if call_id in state.skipped_calls or name == DONE_TOOL:
        return STOP_TOKEN
    arguments = parse_arguments(raw_arguments)
    with episode.call_scope():
        async with episode.lock:
            episode.check_open()
            started = time.perf_counter()
            async with state.compute.waiting(episode.session.tool_calls_wait):
                result = await episode.session.call_tool(tool_call(call_id, name, arguments, "assistant"))
            episode.check_open()  # a call close() gave up waiting for touches nothing more
            state.record_tool(name, arguments, result, latency_s=time.perf_counter() - started)
    return str(result.content)


async def _think(episode: EpisodeTools, call_id: str, name: str, raw_arguments: str) -> str:
    arguments = parse_arguments(raw_arguments)
    with episode.call_scope():
        episode.state.events.emit("think", call_id=call_id, thoughts=arguments.get("thoughts", arguments))
    return THINK_REPLY


def think_tool() -> Tool:
    schema = think_schema()
    return function_tool(schema.name, schema.description, schema.parameters, _think)


_shared_tools: collections.OrderedDict[int, tuple[Sequence[ToolSchema], list[Tool]]] = (
    collections.OrderedDict()
)


def function_tools(schemas: Sequence[ToolSchema]) -> list[Tool]:
    """The FunctionTools of a tool list, built once per list object (backends hand every
    episode of a domain the same list), so an episode does not rebuild ~40 tools."""
    key = id(schemas)
    cached = _shared_tools.get(key)
    if cached is not None and cached[0] is schemas:
        _shared_tools.move_to_end(key)
        return cached[1]
    tools = [function_tool(s.name, s.description, s.parameters, _invoke) for s in schemas]
    _shared_tools[key] = (schemas, tools)  # holding `schemas` keeps its id from being reused
    if len(_shared_tools) > 64:
        _shared_tools.popitem(last=False)
    return tools


def model_settings(spec: EpisodeSpec) -> ModelSettings:
    """The request settings of stock tau2's agents: `tool_choice` "required" for the solo
    agent (LLMSoloAgent), "auto" otherwise (tau2's generate() with tools); no
    `parallel_tool_calls` (stock sends none); the configured sampling."""
    sampling = spec.policy.sampling
    # The per-call limit goes out as `max_tokens`, as stock tau2 sends it (AReaL's proxy reads
    # it as max_completion_tokens; it refuses a request that sets both).
    extra: dict[str, Any] = {}
    if sampling.seed is not None:
        # Samples of one task must not replay each other on a seeded endpoint.
        extra["seed"] = sampling.seed + spec.sample
    return ModelSettings(
        temperature=sampling.temperature,
        top_p=None if sampling.top_p == 1.0 else sampling.top_p,  # 1.0: the API default, unsent
        max_tokens=sampling.max_completion_tokens,
        tool_choice="required" if spec.solo_mode else "auto",
        extra_body=dict(sampling.extra_body) if sampling.extra_body else None,
        extra_args=extra or None,
    )


def within_budget(settings: ModelSettings, state: EpisodeState) -> ModelSettings:
    """The settings of the next call under the conversation's token budget (AReaL's
    `max_tokens`): the next prompt is at least the last call's prompt plus completion, so
    the call may complete at most what is left; nothing left is a context overflow."""
    budget = state.spec.policy.sampling.max_total_tokens
    if budget is None or not state.context_tokens:
        return settings
    left = budget - state.context_tokens
    if left <= 0:
        raise ContextOverflow(
            f"the conversation holds {state.context_tokens} tokens; the budget (max_tokens) is {budget}"
        )
    return dataclasses.replace(settings, max_tokens=min(settings.max_tokens or left, left))


def build_agent(session: EnvSession, state: EpisodeState, model: Model) -> tuple[AgentLoop, EpisodeTools]:
    """The episode's agent and the context object to run it with."""
    agent = AgentLoop(
        name="tau2-agent",
        instructions=session.system_prompt,
        tools=[*function_tools(session.tools), *([think_tool()] if state.spec.think_tool else [])],
        model=model,
        settings=model_settings(state.spec),
        stop_at_tool=DONE_TOOL if session.solo_mode else None,
        answer_unknown_tool=_invoke,
        reset_tool_choice=False,  # tau2 sends the same tool_choice on every call
    )
    return agent, EpisodeTools(session, state)


def input_items(messages: list[Message]) -> list[InputItem]:
    """The agent's view of tau2 messages (user tool calls are invisible to the agent)."""
    items: list[Any] = []
    for m in messages:
        if m.role == "user" and m.content is not None:
            items.append({"role": "user", "content": m.content})
        elif m.role == "assistant":
            if m.content is not None:
                items.append({"role": "assistant", "content": m.content})
            for c in m.tool_calls or []:
                items.append(
                    {
                        "type": "function_call",
                        "call_id": c.id,
                        "name": c.name,
                        "arguments": json.dumps(c.arguments),
                    }
                )
        elif m.role == "tool" and m.requestor == "assistant":
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": m.id,
                    "output": m.content or "",
                }
            )
    return items


ModelFactory = Callable[[EpisodeSpec, Any], Model]
