"""The engine's one door to the OpenAI Agents SDK (openai-agents 0.4.2 to the newest release).

Every use of the SDK goes through here: the `Model` interface the policies implement, function
tools, the agent and its `Runner` call, tool calls to names the agent does not have, and the
SDK's errors. Where releases differ, this module asks the SDK for the feature, never for its
version number.

A model call the agent has no tool for (a name the model made up) is answered by the same
callback as every other tool call, so the environment replies with tau2's own error, as tau2's
orchestrator does. Newer SDKs do this publicly (`RunConfig.tool_not_found_behavior` with a
`tool_error_formatter`); older ones look calls up in the tool list they handed the model, so the
model wrapper adds a tool for each made-up name to that list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import version
from typing import Any

from agents import (
    Agent,
    FunctionTool,
    Model,
    ModelResponse,
    ModelSettings,
    OpenAIChatCompletionsModel,
    RunConfig,
    Runner,
    RunResult,
    StopAtTools,
    Usage,
)
from agents.exceptions import AgentsException, MaxTurnsExceeded, ModelBehaviorError
from agents.items import TResponseInputItem, TResponseStreamEvent
from agents.tool import Tool
from agents.tool_context import ToolContext
from openai import AsyncOpenAI
from openai.types.responses import ResponseFunctionToolCall

__all__ = [
    "AgentLoop",
    "AgentsException",
    "InputItem",
    "MaxTurnsExceeded",
    "Model",
    "ModelBehaviorError",
    "ModelResponse",
    "ModelSettings",
    "RunResult",
    "Tool",
    "ToolAnswer",
    "Usage",
    "WholeResponseModel",
    "chat_completions_model",
    "function_tool",
]

InputItem = TResponseInputItem
"""One item of a conversation in the Responses format (a message, a function call, an output)."""


ToolAnswer = Callable[[Any, str, str, str], Awaitable[str]]
"""Runs one tool call: `(the run's context object, call id, tool name, raw JSON arguments)`
to the tool's output."""


SDK_ANSWERS_UNKNOWN_TOOLS = "tool_not_found_behavior" in {f.name for f in dataclasses.fields(RunConfig)}
"""The SDK hands tool calls to unknown names to `RunConfig.tool_error_formatter` (0.17.4+)."""

UNKNOWN_TOOL_DESCRIPTION = "Not a tool of this environment."
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


def _require_working_usage() -> None:
    """openai 2.45 made `cache_write_tokens` required, which openai-agents before 0.18.1 does
    not fill in: every run of such a pair fails deep inside the SDK, so say so at import."""
    try:
        Usage()
    except ValueError as exc:  # pydantic's ValidationError
        raise ImportError(
            f"openai-agents {version('openai-agents')} does not work with openai {version('openai')} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0]}); install 'openai<2.45' or "
            "'openai-agents>=0.18.1'"
        ) from exc


_require_working_usage()


class WholeResponseModel(Model):
    """A Model that answers whole responses; the engine runs `Runner.run`, never streams.

    Subclasses implement `get_response(system_instructions, input, model_settings, tools,
    output_schema, handoffs, tracing, **kwargs)`: the SDK's keyword-only arguments (which newer
    releases extend) arrive in `kwargs`, and a model that wraps another passes them on.
    """

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError("the engine runs agents with Runner.run, not streaming")


def function_tool(name: str, description: str, parameters: dict[str, Any], answer: ToolAnswer) -> Tool:
    """A tool whose calls `answer` runs (arguments are passed on unparsed and unvalidated)."""

    async def invoke(ctx: ToolContext[Any], raw_arguments: str) -> str:
        return await answer(ctx.context, ctx.tool_call_id, name, raw_arguments)

    return FunctionTool(
        name=name,
        description=description,
        params_json_schema=parameters,
        on_invoke_tool=invoke,
        strict_json_schema=False,
    )


def chat_completions_model(model: str, client: AsyncOpenAI) -> Model:
    """The SDK's chat-completions model on an OpenAI-compatible endpoint."""
    return OpenAIChatCompletionsModel(model=model, openai_client=client)


class _UnknownTools:
    """Routes calls to names the agent has no tool for to the engine's tool answer, and keeps
    the first error of such a call to raise from the run at its next model call or its end."""

    def __init__(self, answer: ToolAnswer) -> None:
        self.answer = answer
        self.arguments: dict[str, str] = {}
        self.failure: Exception | None = None

    def note(self, response: ModelResponse, tools: list[Tool]) -> None:
        """Remember the arguments of the response's unknown calls (the SDK's formatter does
        not get them); for an SDK without the public routing, add a tool for each name to the
        list the Runner looks the calls up in."""
        known = {tool.name for tool in tools}
        for item in response.output:
            if not isinstance(item, ResponseFunctionToolCall) or item.name in known:
                continue
            if SDK_ANSWERS_UNKNOWN_TOOLS:
                self.arguments[item.call_id] = item.arguments
            else:
                tools.append(function_tool(item.name, UNKNOWN_TOOL_DESCRIPTION, _NO_PARAMETERS, self.answer))
                known.add(item.name)

    async def format_error(self, error: Any) -> str | None:
        """`RunConfig.tool_error_formatter`: the environment's reply to an unknown tool."""
        if error.kind != "tool_not_found":
            return None
        raw_arguments = self.arguments.pop(error.call_id, "{}")
        try:
            return await self.answer(error.run_context.context, error.call_id, error.tool_name, raw_arguments)
        except Exception as exc:  # raised again by the run; the SDK would only log it
            self.failure = self.failure or exc
            return None

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def run_config_fields(self) -> dict[str, Any]:
        if not SDK_ANSWERS_UNKNOWN_TOOLS:
            return {}
        return {"tool_not_found_behavior": "return_error_to_model", "tool_error_formatter": self.format_error}


class _RoutingModel(WholeResponseModel):
    def __init__(self, inner: Model, unknown: _UnknownTools) -> None:
        self.inner = inner
        self.unknown = unknown

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
        self.unknown.raise_failure()
        response = await self.inner.get_response(
            system_instructions, input, model_settings, tools, output_schema, handoffs, tracing, **kwargs
        )
        self.unknown.note(response, tools)
        return response


class AgentLoop:
    """One episode's agent and how the Runner runs it: tracing off, unknown tool names
    answered by `answer_unknown_tool`, an agent turn ending at `stop_at_tool` if given, the
    settings' `tool_choice` kept after a tool call unless `reset_tool_choice`."""

    def __init__(
        self,
        *,
        name: str,
        instructions: str,
        tools: list[Tool],
        model: Model,
        settings: ModelSettings,
        stop_at_tool: str | None,
        answer_unknown_tool: ToolAnswer,
        reset_tool_choice: bool = True,
    ) -> None:
        self.unknown = _UnknownTools(answer_unknown_tool)
        self.agent: Agent[Any] = Agent(
            name=name,
            instructions=instructions,
            tools=tools,
            model=_RoutingModel(model, self.unknown),
            model_settings=settings,
            reset_tool_choice=reset_tool_choice,
            tool_use_behavior=StopAtTools(stop_at_tool_names=[stop_at_tool])
            if stop_at_tool is not None
            else "run_llm_again",
        )
        self.run_config = RunConfig(
            tracing_disabled=True, workflow_name="tau2-engine", **self.unknown.run_config_fields()
        )

    async def run(self, conversation: list[InputItem], *, context: Any, max_turns: int) -> RunResult:
        """Run the agent from `conversation` until it answers (or stops at its stop tool)."""
        result = await Runner.run(
            self.agent, input=conversation, context=context, max_turns=max_turns, run_config=self.run_config
        )
        self.unknown.raise_failure()
        return result

