"""The LLM user simulator: tau2's UserSimulator, asynchronous, on an OpenAI-compatible
endpoint (TAU2_USER_LLM, TAU2_USER_LLM_API_BASE, TAU2_USER_LLM_API_KEY or `--user llm`).

It keeps tau2's behaviour: the system prompt is tau2's user-simulation guidelines (the
tools variant when the domain gives the user tools, e.g. telecom) plus the task's
`user_scenario`; the conversation is tau2's role-flipped user view; the user's tool calls
run on the episode's environment and their results go back to the user model until it
answers the agent in text (which may carry tau2's stop tokens). Each model call's latency
and token usage ride on the returned tau2 messages (see `users.base.call_metrics`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from engine.config import DEFAULT_USER_MAX_TOKENS, Endpoint
from engine.errors import ModelError
from engine.events import emit_in_episode
from engine.retry import call_with_retries, retry_events, retry_policy
from engine.trajectory import parse_arguments
from engine.users.base import ToolRunner

if TYPE_CHECKING:
    from tau2.data_model.message import Message, ToolCall, UserMessage
    from tau2.data_model.tasks import Task

MAX_TOOL_ROUNDS = 25
"""User tool calls in one reply before the simulator is declared broken."""

USER_TEMPERATURE = 0.0
"""tau2's DEFAULT_LLM_TEMPERATURE_USER."""

EMPTY_REPLY_RETRIES = 3
"""Times an empty user reply is asked again (tau2's DEFAULT_MAX_RETRIES)."""

def system_prompt(task: Task, *, use_tools: bool) -> str:
    """tau2's user-simulator system prompt for `task`."""
    from tau2.user.user_simulator import SYSTEM_PROMPT, get_global_user_sim_guidelines

    return SYSTEM_PROMPT.format(
        global_user_sim_guidelines=get_global_user_sim_guidelines(use_tools=use_tools),
        instructions=str(task.user_scenario),
    )


def api_messages(system: str, history: Sequence[Message]) -> list[dict[str, Any]]:
    """The user's role-flipped view (tau2 `UserState.flip_roles`) as chat messages."""
    from tau2.user.base import UserState

    flipped = UserState(system_messages=[], messages=list(history)).flip_roles()
    out: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for m in flipped:
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.id, "content": m.content or ""})
        elif m.role == "assistant" and m.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": m.content,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": _dumps(c.arguments)},
                        }
                        for c in m.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": m.role, "content": m.content or ""})
    return out


def _dumps(arguments: Mapping[str, Any]) -> str:
    return json.dumps(dict(arguments))


class LLMUser:
    """tau2's user simulator on an OpenAI-compatible endpoint (async)."""

    def __init__(
        self,
        endpoint: Endpoint,
        task: Task,
        run_tool: ToolRunner,
        *,
        tools: Sequence[Mapping[str, Any]] | None,
        seed: int | None = None,
        client: AsyncOpenAI,
        max_tokens: int = DEFAULT_USER_MAX_TOKENS,
        request_args: Mapping[str, Any] | None = None,
    ) -> None:
        from tau2.user.base import is_valid_user_history_message

        self.endpoint = endpoint
        self._run_tool = run_tool
        self._tools = [dict(t) for t in tools] if tools else None
        self._seed = seed
        self._client = client
        self._max_tokens = max_tokens
        self._request_args = dict(request_args or {})
        self.system_prompt = system_prompt(task, use_tools=self._tools is not None)
        state = task.initial_state
        past = (state.message_history or []) if state else []
        self.history: list[Message] = [
            m.model_copy(deep=True) for m in past if is_valid_user_history_message(m)
        ]

    def client(self) -> AsyncOpenAI:
        return self._client

    async def reply(self, agent_text: str) -> list[Message]:
        from tau2.data_model.message import AssistantMessage

        self.history.append(AssistantMessage(role="assistant", content=agent_text))
        out: list[Message] = []
        for _ in range(MAX_TOOL_ROUNDS):
            message = await self._generate_valid()
            self.history.append(message)
            out.append(message)
            if not message.tool_calls:
                return out
            for call in message.tool_calls:
                result = self._run_tool(call)
                self.history.append(result)
                out.append(result)
        raise ModelError(f"user simulator made {MAX_TOOL_ROUNDS} rounds of tool calls without answering")

    async def _generate_valid(self) -> UserMessage:
        """A user message tau2's `UserMessage.validate` accepts: an empty one is asked
        again (tau2's generate() retries it), then the simulator is declared broken."""
        for asked in range(EMPTY_REPLY_RETRIES + 1):
            message = await self._generate()
            if message.tool_calls or (message.content or "").strip():
                return message
            if asked < EMPTY_REPLY_RETRIES:
                emit_in_episode(
                    "retry",
                    attempt=asked,
                    error_type="EmptyMessage",
                    error="empty user reply (no text, no tool calls): asking again",
                    backoff_s=0.0,
                    scope="user_call",
                )
        raise ModelError(
            f"user simulator sent an empty message {EMPTY_REPLY_RETRIES + 1} times in a row"
        )

    async def _generate(self) -> UserMessage:
        from tau2.data_model.message import UserMessage

        request: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": api_messages(self.system_prompt, self.history),
            "temperature": USER_TEMPERATURE,
            "max_tokens": self._max_tokens,
            **self._request_args,
        }
        if "max_completion_tokens" in self._request_args:
            del request["max_tokens"]  # one completion limit: servers refuse both
        if self._tools:
            request["tools"] = self._tools
            request["tool_choice"] = "auto"
        if self._seed is not None:
            request["seed"] = self._seed

        async def attempt() -> tuple[ChatCompletion, float]:
            started = time.perf_counter()
            completion = await self.client().chat.completions.create(**request)
            return completion, time.perf_counter() - started

        completion, latency = await call_with_retries(
            attempt,
            retry_policy(self.endpoint),
            what="user simulator call",
            on_retry=retry_events("user_call"),
            overflow=ModelError,  # the simulator's failure, not the policy's
        )
        if not completion.choices:
            raise ModelError("user simulator endpoint answered with no choices")
        choice = completion.choices[0].message
        usage = completion.usage
        calls = [_user_call(c) for c in choice.tool_calls or [] if c.type == "function"]
        return UserMessage(
            role="user",
            content=choice.content if calls else (choice.content or ""),
            tool_calls=calls or None,
            usage=(
                {
                    "input_tokens": usage.prompt_tokens,
                    "output_tokens": usage.completion_tokens,
                    "total_tokens": usage.total_tokens,
                }
                if usage is not None and usage.total_tokens
                else None
            ),
            raw_data={"latency_s": latency, "model": self.endpoint.model},
        )


def _user_call(call: Any) -> ToolCall:
    from tau2.data_model.message import ToolCall

    return ToolCall(
        id=call.id,
        name=call.function.name,
        arguments=parse_arguments(call.function.arguments or ""),
        requestor="user",
    )
