"""EpisodeAgent lists the same tools as the SDK's Agent, without a task per tool."""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent, FunctionTool
from agents.run_context import RunContextWrapper

from engine.agent import EpisodeAgent


def _tool(name: str, enabled: Any = True) -> FunctionTool:
    async def invoke(ctx: Any, raw: str) -> str:
        return raw

    return FunctionTool(name=name, description=name, params_json_schema={"type": "object", "properties": {}},
                        on_invoke_tool=invoke, strict_json_schema=False, is_enabled=enabled)


@pytest.mark.anyio
@pytest.mark.parametrize("enabled", [True, False, lambda ctx, agent: False], ids=["on", "off", "callable"])
async def test_episode_agent_tools_equal_sdk_agent_tools(enabled: Any) -> None:
    tools = [_tool("a"), _tool("b", enabled)]
    context = RunContextWrapper(context=None)
    ours = await EpisodeAgent(name="x", tools=list(tools)).get_all_tools(context)
    sdk = await Agent(name="x", tools=list(tools)).get_all_tools(context)
    assert [t.name for t in ours] == [t.name for t in sdk]
