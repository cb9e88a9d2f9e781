"""The tau2 environment served by AEnvironment's own MCP server (`tau2-engine serve-env`).

What the original `tau2_rl` example talks to, one episode at a time:

- tau2's tools as MCP tools under their bare tau2 names (plus `done` in solo mode),
- functions `tau2_get_system_prompt`, `tau2_get_status`, `tau2_get_task_info`,
  `tau2_send_message`, `tau2_done`, and `tau2_reset` (switch to another domain, task and
  mode, so one process serves many episodes one after another),
- a reward at `/task/reward`, computed from the trajectory the server keeps itself.

The episode is a `LocalSession`: setup, tools, simulated user and scoring are the local
backend's, so rewards are identical. The first episode comes from the `TAU2_*` variables
AEnvironment sets on a sandbox (`TAU2_DOMAIN`, `TAU2_TASK_ID`, `TAU2_SOLO_MODE`,
`TAU2_SPLIT`, `TAU2_MAX_STEPS`, `TAU2_USER_LLM*`).

Trajectory kept by the server: every tool call as an assistant message carrying that one
call, then its tool message; every `tau2_send_message` as an assistant text message, then
the user's messages; `done` as tau2's stop message. Evaluation reads tool calls and
message contents, not how calls were grouped into messages.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from fastmcp.exceptions import ToolError
from fastmcp.tools.tool import Tool, ToolResult
from mcp.types import TextContent
from pydantic import PrivateAttr

from engine import catalog
from engine.config import DEFAULT_MAX_STEPS, Endpoint, EpisodeSpec, UserConfig, check_bool
from engine.envs.local import LocalSession, build_environment
from engine.errors import ConfigError
from engine.trajectory import DONE_TOOL, STOP_TOKEN, Trajectory, assistant_message, tool_call
from engine.users.base import is_stop

if TYPE_CHECKING:
    from aenv.server.mcp_server import AEnvMCPServer
    from tau2.data_model.message import Message

SERVER_NAME = "tau2-env"
PARENT_PID_VAR = "TAU2_ENGINE_PARENT_PID"
"""Set by the aenv-local pool: the server exits when that process is gone."""


@dataclass
class ServedEpisode:
    """The episode a server currently holds."""

    session: LocalSession
    max_steps: int
    trajectory: Trajectory
    steps: int = 0
    done: bool = False
    stop_reason: str | None = None
    last_observation: str = ""
    ids: itertools.count[int] = field(default_factory=itertools.count)

    def record(self, messages: list[Message]) -> None:
        for message in messages:
            self.trajectory.add(message)


class Tau2Service:
    """The episode state behind the server's tools and functions."""

    def __init__(self) -> None:
        self.episode: ServedEpisode | None = None
        self.served = 0
        self._tools: dict[str, Tool] = {}
        self._tools_key: tuple[str, bool] | None = None
        self._cpu: anyio.CapacityLimiter | None = None

    @property
    def cpu(self) -> anyio.CapacityLimiter:
        if self._cpu is None:
            self._cpu = anyio.CapacityLimiter(1)
        return self._cpu

    def current(self) -> ServedEpisode:
        if self.episode is None:
            raise ConfigError("no episode: call tau2_reset(domain, task_id) first")
        return self.episode

    # -- episode lifecycle ---------------------------------------------------------------

    def reset(self, spec: EpisodeSpec) -> ServedEpisode:
        task = catalog.get_task(spec.domain, spec.task_id, spec.split)
        env = build_environment(spec, task)
        session = LocalSession(spec, task, env, self.cpu)
        self.episode = ServedEpisode(
            session=session, max_steps=spec.max_steps, trajectory=Trajectory(session.history)
        )
        self.served += 1
        return self.episode

    def task_info(self) -> dict[str, Any]:
        if self.episode is None:
            return {"task_id": None, "domain": None, "ticket": None, "tools": [],
                    "policy_preview": "", "max_steps": 0, "solo_mode": None, "split": None}
        session = self.episode.session
        policy = session.env.get_policy()
        return {
            "task_id": session.task.id,
            "domain": session.spec.domain,
            "split": session.spec.split,
            "ticket": session.task.ticket,
            "tools": [t.name for t in session.tools],
            "policy_preview": policy[:500] + "..." if len(policy) > 500 else policy,
            "max_steps": self.episode.max_steps,
            "solo_mode": session.solo_mode,
            "episodes_served": self.served,
        }

    def status(self) -> dict[str, Any]:
        episode = self.episode
        return {
            "step": episode.steps if episode else 0,
            "max_steps": episode.max_steps if episode else 0,
            "done": episode.done if episode else True,
            "last_observation": episode.last_observation if episode else "",
            "rewards": [],
            "total_reward": 0.0,
            "turns": len(episode.trajectory) if episode else 0,
            "environment": {k: v for k, v in os.environ.items()
                            if k.startswith("TAU2_") and "KEY" not in k},
        }

    # -- agent actions -------------------------------------------------------------------

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> tuple[str, bool]:
        """Run one agent tool call; (tool message content, error flag)."""
        episode = self.current()
        if name == DONE_TOOL and episode.session.solo_mode:
            self.done()
            return STOP_TOKEN, False
        call = tool_call(f"aenv_call_{next(episode.ids)}", name, arguments, "assistant")
        result = await episode.session.call_tool(call)
        episode.record([assistant_message(None, [_call_dict(call)], solo_mode=False), result])
        episode.steps += 1
        episode.last_observation = str(result.content or "")
        return str(result.content or ""), bool(result.error)

    async def send_message(self, message: str) -> dict[str, Any]:
        episode = self.current()
        episode.record([assistant_message(message, [], solo_mode=False)])
        replies = await episode.session.send_to_user(message)
        episode.record(replies)
        episode.steps += 1
        text = next((m.content for m in reversed(replies) if m.role == "user"), None)
        episode.last_observation = text or ""
        if is_stop(text):
            episode.done, episode.stop_reason = True, "user_stop"
        return {
            "observation": episode.last_observation,
            "reward": 0.0,
            "done": episode.done,
            "messages": [m.model_dump(mode="json") for m in replies],
        }

    def done(self) -> dict[str, Any]:
        episode = self.current()
        if not episode.done:
            episode.record([assistant_message(STOP_TOKEN, [], solo_mode=False)])
            episode.done, episode.stop_reason = True, "agent_stop"
        return {"done": True, "total_reward": 0.0, "steps": episode.steps,
                "final_observation": episode.last_observation}

    async def reward(self, termination_reason: str | None = None) -> dict[str, Any]:
        episode = self.current()
        termination = termination_reason or episode.stop_reason or "max_steps"
        score = await episode.session.score(list(episode.trajectory.messages), termination)
        return {
            "total_reward": score.reward,
            "rewards": [score.reward],
            "reward_info": score.reward_info,
            "termination_reason": termination,
            "done": episode.done,
            "steps": episode.steps,
        }

    # -- the MCP tool set follows the episode's domain and mode --------------------------

    def sync_tools(self, server: AEnvMCPServer) -> None:
        """Offer exactly the episode's tools, in tau2's order (re-registered when the
        domain or mode changes)."""
        session = self.episode.session if self.episode else None
        key = (session.spec.domain, session.solo_mode) if session else None
        if key == self._tools_key:
            return
        for name in self._tools:
            server.mcp.remove_tool(name)
        self._tools = {}
        for schema in session.tools if session else []:
            tool = Tau2Tool(name=schema.name, description=schema.description,
                            parameters=schema.parameters)
            tool.bind(self)
            server.mcp.add_tool(tool)
            self._tools[schema.name] = tool
        self._tools_key = key


class Tau2Tool(Tool):
    """One tau2 tool as an MCP tool: the exact tau2 schema in, tau2's tool message out
    (an MCP error result carrying tau2's error text when the call failed)."""

    _service: Tau2Service | None = PrivateAttr(default=None)

    def bind(self, service: Tau2Service) -> None:
        self._service = service

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        assert self._service is not None
        try:
            content, error = await self._service.call_tool(self.name, arguments)
        except ConfigError as exc:
            raise ToolError(str(exc)) from exc
        if error:
            raise ToolError(content)
        return ToolResult(content=[TextContent(type="text", text=content)] if content else [])


def _call_dict(call: Any) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": call.arguments}


def spec_from_reset(
    domain: str,
    task_id: str,
    solo_mode: object = None,
    split: str | None = None,
    max_steps: object = None,
    user_llm: str | None = None,
    user_llm_api_base: str | None = None,
    user_llm_api_key: str | None = None,
) -> EpisodeSpec:
    """The server's episode from reset arguments (or the TAU2_* variables)."""
    domain = catalog.check_domain(domain)
    task = catalog.get_task(domain, task_id, split or None)
    if solo_mode is None or solo_mode == "":
        solo = catalog.default_solo_mode(task)
    else:
        solo = check_bool("solo_mode", solo_mode)
    steps = DEFAULT_MAX_STEPS if max_steps in (None, "") else int(str(max_steps))
    user = UserConfig()
    if user_llm and user_llm_api_base:
        user = UserConfig(kind="llm", endpoint=Endpoint(
            base_url=user_llm_api_base, api_key=user_llm_api_key or "EMPTY", model=user_llm))
    return EpisodeSpec(domain=domain, task_id=task.id, split=split or None, solo_mode=solo,
                       max_steps=steps, user=user)


def spec_from_environ() -> EpisodeSpec | None:
    task_id = os.environ.get("TAU2_TASK_ID")
    if not task_id:
        return None
    return spec_from_reset(
        domain=os.environ.get("TAU2_DOMAIN", catalog.DEFAULT_DOMAIN),
        task_id=task_id,
        solo_mode=os.environ.get("TAU2_SOLO_MODE"),
        split=os.environ.get("TAU2_SPLIT"),
        max_steps=os.environ.get("TAU2_MAX_STEPS"),
        user_llm=os.environ.get("TAU2_USER_LLM"),
        user_llm_api_base=os.environ.get("TAU2_USER_LLM_API_BASE"),
        user_llm_api_key=os.environ.get("TAU2_USER_LLM_API_KEY"),
    )


def build_server(service: Tau2Service) -> AEnvMCPServer:
    """aenv's MCP server with the service's functions, reward, health and tools."""
    import aenv.server.mcp_server as mcp_server
    from aenv import register_function, register_reward

    started = time.time()

    async def tau2_health() -> dict[str, Any]:
        """Liveness of this server (the SDK's default probes localhost:8081 only)."""
        return {"status": "success", "message": "tau2-env is serving",
                "uptime_s": time.time() - started, "episodes_served": service.served}

    # AEnvMCPServer registers `default_health_handler` at /health on construction.
    mcp_server.default_health_handler = tau2_health
    server = mcp_server.create_server(name=SERVER_NAME)

    @register_function
    async def tau2_reset(
        domain: str,
        task_id: str,
        solo_mode: bool | None = None,
        split: str | None = None,
        max_steps: int | None = None,
        user_llm: str | None = None,
        user_llm_api_base: str | None = None,
        user_llm_api_key: str | None = None,
    ) -> dict[str, Any]:
        """Start a new episode on (domain, task_id, solo_mode); returns the task info and
        the system prompt."""
        spec = spec_from_reset(domain, task_id, solo_mode, split, max_steps,
                               user_llm, user_llm_api_base, user_llm_api_key)
        await anyio.to_thread.run_sync(service.reset, spec, limiter=service.cpu)
        service.sync_tools(server)
        return {**service.task_info(), "system_prompt": service.current().session.system_prompt}

    @register_function
    def tau2_get_system_prompt() -> str:
        """tau2's agent system prompt for the current task (solo or with a user)."""
        return service.current().session.system_prompt

    @register_function
    def tau2_get_task_info() -> dict[str, Any]:
        """Task id, domain, ticket, tool names, policy preview, max_steps, solo_mode."""
        return service.task_info()

    @register_function
    def tau2_get_status() -> dict[str, Any]:
        """Step, max_steps, done, last_observation of the current episode."""
        return service.status()

    @register_function
    async def tau2_send_message(message: str) -> dict[str, Any]:
        """Send the agent's message to the user (non-solo); returns the user's reply."""
        return await service.send_message(message)

    @register_function
    def tau2_done() -> dict[str, Any]:
        """Signal that the agent has completed the task."""
        return service.done()

    @register_reward
    async def tau2_reward(termination_reason: str | None = None) -> dict[str, Any]:
        """tau2's evaluation of the episode's trajectory (`total_reward`, `reward_info`)."""
        return await service.reward(termination_reason)

    _ = (tau2_reset, tau2_get_system_prompt, tau2_get_task_info, tau2_get_status,
         tau2_send_message, tau2_done, tau2_reward)
    service.sync_tools(server)
    return server


def _exit_with_parent(parent_pid: int) -> None:
    """Exit as soon as the process that started this server is gone (no orphans)."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(host: str, port: int) -> int:
    """Run the server until it is stopped (blocking)."""
    parent = os.environ.get(PARENT_PID_VAR)
    if parent:
        _exit_with_parent(int(parent))
    from aenv import setup_logging

    setup_logging(level=30)  # SDK INFO lines per call would dominate the server's time
    service = Tau2Service()
    initial = spec_from_environ()
    if initial is not None:
        service.reset(initial)
    server = build_server(service)
    server.mcp.run(transport="streamable-http", host=host, port=port, show_banner=False,
                   log_level="warning")
    return 0
