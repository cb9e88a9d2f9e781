"""AReaL's optional `think` tool (`econfig.add_thinking_tool`): the agent may write down its
thoughts; the engine answers, the environment never sees the call.

The tool is the function AReaL's tau2 example hands tau2's `Tool`, so the schema the
model is shown is the one AReaL shows. Think calls are not part of the tau2 trajectory
(tau2's evaluator replays every tool call on the environment, which has no such tool);
each is a `think` event.
"""

from __future__ import annotations

import functools

from engine import tau2lib
from engine.envs.base import ToolSchema

THINK_TOOL = "think"
THINK_REPLY = "Your thoughts are recorded. Please continue your work."


def think(thoughts: str) -> str:
    """Use this tool to think. The thoughts will be visible in the history.
    Only use this tool to think when necessary.
    """
    return THINK_REPLY


@functools.cache
def think_schema() -> ToolSchema:
    """The schema tau2 builds for `think`, as AReaL's example offers it."""
    tau2lib.load()
    from tau2.environment.tool import Tool

    function = Tool(think).openai_schema["function"]
    return ToolSchema(function["name"], function["description"], function["parameters"])
