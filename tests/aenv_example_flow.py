"""AEnvironment's `tau2_rl` example client flow (`aenv/examples/tau2_rl/agent.py`),
re-enacted step by step for the tests, run as its own process (it sets the Agents SDK's
process-wide default API, as the example does):

    python -m tests.aenv_example_flow DOMAIN TASK_ID   -> prints {"reward": ...}

`Environment(env_name, environment_variables=TAU2_*)`, `initialize()`, the system prompt
from `tau2_get_system_prompt`, `list_openai_tools()` (strict FunctionTools) into an Agents
SDK Agent on the SDK's default model (OPENAI_BASE_URL / OPENAI_API_KEY), `tau2_get_status`
for `max_steps`, then per step: status, `Runner.run` on the last observation (10 turns,
tools called over MCP), `tau2_send_message` with the final output; at the end
`call_reward({})`. With DUMMY_INSTANCE_IP the client skips the scheduler and talks to the
server at that address (control 8080, data 8081 with MCP at /mcp).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from aenv.core.environment import Environment
from agents import Agent, ModelSettings, RunConfig, Runner, set_default_openai_api

ENV_NAME = "tau2-env@1.0.0"
"""The name the example asks for (with DUMMY_INSTANCE_IP it only prefixes tool names)."""


async def run_agent_return_reward(data: dict[str, Any]) -> tuple[float, list[str]]:
    """The example's entry point; also returns what went wrong on the way, which the
    example only prints."""
    errors: list[str] = []
    env = Environment(
        env_name=ENV_NAME,
        environment_variables=dict(
            TAU2_DOMAIN=data.get("domain", "telecom"),
            TAU2_TASK_ID=data.get("task_id", ""),
            TAU2_SOLO_MODE="true" if os.getenv("TAU2_USER_LLM") is None else "false",
            TAU2_USER_LLM_API_BASE=os.getenv("TAU2_USER_LLM_API_BASE", ""),
            TAU2_USER_LLM_API_KEY=os.getenv("TAU2_USER_LLM_API_KEY", ""),
            TAU2_USER_LLM=os.getenv("TAU2_USER_LLM", ""),
        ),
    )
    try:
        await env.initialize()
        system_prompt = await env.call_function("tau2_get_system_prompt", {})
        tools = await env.list_openai_tools()
        agent = Agent(name="Tau2 Agent", instructions=str(system_prompt), tools=tools)
        status = await env.call_function("tau2_get_status", {})
        max_steps = status.get("max_steps", 50)
        step = 0
        while step < max_steps:
            step += 1
            status = await env.call_function("tau2_get_status", {})
            if status.get("done", False):
                break
            last = status.get("last_observation", "")
            current_input = last if last else "Please start working on the task."
            try:
                result = await Runner.run(
                    agent,
                    input=current_input,
                    run_config=RunConfig(
                        tracing_disabled=True,
                        model_settings=ModelSettings(
                            temperature=1.0, top_p=1.0,
                            extra_args={"max_completion_tokens": 8192}),
                    ),
                    max_turns=10,
                )
                status = await env.call_function("tau2_send_message",
                                                 {"message": result.final_output})
                if status.get("done", False):
                    break
            except Exception as exc:  # the example prints "Agent turn error" and goes on
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
        reward = await env.call_reward({})
        return float(reward.get("total_reward", 0.0)), errors
    finally:
        await env.release()


def main() -> None:
    set_default_openai_api("chat_completions")
    reward, errors = asyncio.run(run_agent_return_reward(
        {"domain": sys.argv[1], "task_id": sys.argv[2]}))
    print(json.dumps({"reward": reward, "errors": errors}))


if __name__ == "__main__":
    main()
