"""A Model that plays a fixed script of tool calls and messages through the Agents SDK.

The oracle and noisy-oracle policies are scripts; the Runner, tools, tool execution and
conversation handling around them are the real Agents SDK, exactly as for an LLM.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from engine.sdk import InputItem, ModelResponse, ModelSettings, Tool, Usage, WholeResponseModel

_ids = itertools.count()


@dataclass(frozen=True)
class ToolStep:
    """Call tool `name` with `arguments`."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class SayStep:
    """Send `text` to the user (ends the agent's turn)."""

    text: str


Step = ToolStep | SayStep


@dataclass
class Script:
    """The steps left to play; `final` repeats once the steps run out."""

    steps: list[Step]
    final: Step
    played: int = field(default=0)

    def next(self) -> Step:
        if self.played < len(self.steps):
            step = self.steps[self.played]
            self.played += 1
            return step
        return self.final


class ScriptedModel(WholeResponseModel):
    """Plays a Script, one step per model call, after a simulated latency."""

    def __init__(self, script: Script, *, latency_s: float = 0.0, name: str = "oracle") -> None:
        self.script = script
        self.latency_s = latency_s
        self.name = name
        self.inputs_seen: list[int] = []

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
        self.inputs_seen.append(len(input) if isinstance(input, list) else 1)
        if self.latency_s > 0:
            await anyio.sleep(self.latency_s)
        step = self.script.next()
        n = next(_ids)
        item: ResponseFunctionToolCall | ResponseOutputMessage
        if isinstance(step, ToolStep):
            item = ResponseFunctionToolCall(
                type="function_call",
                call_id=f"call_{n}",
                name=step.name,
                arguments=json.dumps(step.arguments),
                id=f"fc_{n}",
                status="completed",
            )
        else:
            item = ResponseOutputMessage(
                type="message",
                id=f"msg_{n}",
                role="assistant",
                status="completed",
                content=[ResponseOutputText(type="output_text", text=step.text, annotations=[])],
            )
        return ModelResponse(output=[item], usage=Usage(requests=1), response_id=None)


def steps_from_actions(actions: Sequence[Any], *, solo_mode: bool) -> list[Step]:
    """Gold actions as agent steps. In solo mode the agent calls user tools itself; with a
    user, it asks the user to act (the scripted user performs the pending user action)."""
    steps: list[Step] = []
    for action in actions:
        if action.requestor == "assistant" or solo_mode:
            steps.append(ToolStep(action.name, dict(action.arguments)))
        else:
            steps.append(SayStep(f"Please do the following on your side: {action.get_func_format()}"))
    return steps
