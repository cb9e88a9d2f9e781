"""The tau2 environment served by AEnvironment's own MCP server (`tau2-engine serve-env`).

It speaks the protocol of AEnvironment's official tau2 env (`engine.envs.aenv_protocol`,
docs/aenv-protocol.md): tau2's tools and `done` as MCP tools answering the official JSON
envelope, the `tau2_*` functions, a reward at `/task/reward` that needs no arguments, the
official defaults and episode rules (`engine.envs.aenv_episode`). So AEnvironment's
`tau2_rl` example runs against it unmodified.

With `--protocol engine` (the default) it adds, without changing any of that:
`tau2_reset` (switch domain, task and mode, so one process serves episode after episode),
the reward's optional `termination_reason`, `reward_info` and `termination_reason` in
reward results, the user's full messages in `tau2_send_message` results, an `error` flag
in tool envelopes, and tau2's typed tool schemas (accepted by the Agents SDK's strict
mode). `--protocol official` leaves all of these out (untyped schemas as the official
env's tool wrappers have): a stand-in for the official env in tests.

The episode runs on a `LocalSession` (the local backend's setup, tools, simulated user
and scoring), so rewards are identical. The first episode comes from the `TAU2_*`
variables AEnvironment sets on a sandbox.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
from fastmcp.exceptions import ToolError
from fastmcp.tools.tool import Tool, ToolResult
from pydantic import PrivateAttr

from engine import catalog
from engine.clients import ClientPool
from engine.config import DEFAULT_MAX_ERRORS, Endpoint, EpisodeSpec, UserConfig, check_bool
from engine.envs import aenv_protocol as protocol
from engine.envs.aenv_episode import ServedEpisode, StepResult
from engine.envs.local import LocalSession, build_environment, done_schema
from engine.errors import ConfigError
from engine.trajectory import DONE_TOOL, Trajectory

if TYPE_CHECKING:
    from aenv.server.mcp_server import AEnvMCPServer
    from fastmcp import FastMCP

SERVER_NAME = "tau2-engine-env"
PROTOCOLS = ("engine", "official")
PARENT_PID_VAR = "TAU2_ENGINE_PARENT_PID"
"""Set by the aenv-local pool: the server exits when that process is gone."""


def tau2_tool_schemas(session: LocalSession) -> list[dict[str, Any]]:
    """The tools the official env offers, in tau2's OpenAI format: the agent's tools (and
    the user's in solo mode), then `done`, in every mode."""
    schemas = [t for t in session.tools if t.name != DONE_TOOL] + [done_schema()]
    return [{"type": "function",
             "function": {"name": s.name, "description": s.description, "parameters": s.parameters}}
            for s in schemas]


class Tau2Service:
    """The episode state behind the server's tools and functions."""

    def __init__(self, *, extended: bool = True) -> None:
        self.extended = extended
        self.episode: ServedEpisode | None = None
        self.served = 0
        self._tools: dict[str, Tool] = {}
        self._tools_key: tuple[str, bool] | None = None
        self._cpu: anyio.CapacityLimiter | None = None
        self.user_clients = ClientPool(8)
        """LLM users' connections: the service's, for the server's lifetime (one episode at a time)."""
        self._lock: anyio.Lock | None = None
        self._mcp: FastMCP | None = None

    @property
    def cpu(self) -> anyio.CapacityLimiter:
        if self._cpu is None:
            self._cpu = anyio.CapacityLimiter(1)
        return self._cpu

    @property
    def lock(self) -> anyio.Lock:
        """One agent action at a time, as a gym env steps."""
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    async def current(self) -> ServedEpisode:
        """The episode, its opening played (a sandbox's first episode, from TAU2_*, plays
        it on the first request: inside the server's event loop)."""
        if self.episode is None:
            raise ConfigError("no episode: set TAU2_DOMAIN and TAU2_TASK_ID, or call tau2_reset")
        await self.episode.open()
        return self.episode

    # -- episode lifecycle ---------------------------------------------------------------

    def prepare(self, spec: EpisodeSpec) -> ServedEpisode:
        """A new episode for `spec` (blocking: builds the tau2 environment)."""
        task = catalog.get_task(spec.domain, spec.task_id, spec.split)
        env = build_environment(spec, task)
        session = LocalSession(spec, task, env, self.cpu, self.user_clients)
        return ServedEpisode(session=session, max_steps=spec.max_steps, max_errors=spec.max_errors,
                             trajectory=Trajectory(session.history))

    def install(self, episode: ServedEpisode) -> None:
        self.episode = episode
        self.served += 1
        if self._mcp is not None:
            self.sync_tools(self._mcp)

    async def reset(self, spec: EpisodeSpec) -> ServedEpisode:
        episode = await anyio.to_thread.run_sync(self.prepare, spec, limiter=self.cpu)
        self.install(episode)
        await episode.open()
        return episode

    async def task_info(self) -> dict[str, Any]:
        episode = await self.current()
        session = episode.session
        policy = session.env.get_policy()
        info = {
            "task_id": session.task.id,
            "domain": session.spec.domain,
            "ticket": session.task.ticket,
            "tools": [t["function"]["name"] for t in tau2_tool_schemas(session)],
            "policy_preview": policy[:500] + "..." if len(policy) > 500 else policy,
            "max_steps": episode.max_steps,
            "solo_mode": session.solo_mode,
        }
        if self.extended:
            info.update(split=session.spec.split, episodes_served=self.served)
        return info

    async def status(self) -> dict[str, Any]:
        episode = await self.current()
        status = {
            "step": episode.actions,
            "max_steps": episode.max_steps,
            "done": episode.done,
            "last_observation": episode.last_observation,
            "rewards": list(episode.rewards),
            "total_reward": episode.total_reward,
            # The official env shows every TAU2_* variable; keys are not shown here.
            "environment": {k: ("***" if "KEY" in k else v) for k, v in os.environ.items()
                            if k.startswith("TAU2_")},
        }
        if self.extended:
            status["termination_reason"] = episode.termination
        return status

    # -- agent actions -------------------------------------------------------------------

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        async with self.lock:
            episode = await self.current()
            # The official tool wrappers pass on only the arguments that are not None.
            given = {k: v for k, v in arguments.items() if v is not None}
            result = await episode.call_tool(name, given)
            return episode.tool_envelope(result, extended=self.extended)

    async def send_message(self, message: str) -> dict[str, Any]:
        async with self.lock:
            episode = await self.current()
            result = await episode.send_message(message)
            return self._message_reply(result)

    def _message_reply(self, result: StepResult) -> dict[str, Any]:
        reply: dict[str, Any] = {"observation": result.observation, "reward": result.reward,
                                 "done": result.done}
        if self.extended:
            reply["messages"] = [m.model_dump(mode="json") for m in result.messages]
        return reply

    async def done(self) -> dict[str, Any]:
        async with self.lock:
            episode = await self.current()
            await episode.stop()
            return {"done": True, "total_reward": episode.total_reward, "steps": episode.actions,
                    "final_observation": episode.last_observation}

    async def reward(self, termination_reason: str | None = None) -> dict[str, Any]:
        async with self.lock:
            episode = await self.current()
            out: dict[str, Any] = {"rewards": list(episode.rewards),
                                   "total_reward": episode.total_reward,
                                   "done": episode.done, "steps": episode.actions}
            if not self.extended:
                return out
            termination = episode.termination or termination_reason
            score = episode.score
            if score is None and termination is not None:
                # The engine's own budget ended the episode before the server's did.
                score = await episode.evaluate(termination)
                out["total_reward"] = score.reward
            out["reward_info"] = score.reward_info if score is not None else None
            out["termination_reason"] = termination
            return out

    # -- the MCP tool set follows the episode's domain and mode --------------------------

    def sync_tools(self, mcp: FastMCP) -> None:
        """Offer exactly the episode's tools, in tau2's order (re-registered when the
        domain or mode changes)."""
        self._mcp = mcp
        session = self.episode.session if self.episode else None
        key = (session.spec.domain, session.solo_mode) if session else None
        if key == self._tools_key:
            return
        for name in self._tools:
            mcp.remove_tool(name)
        self._tools = {}
        for schema in tau2_tool_schemas(session) if session else []:
            function = schema["function"]
            parameters = (protocol.strict_parameters(function["parameters"]) if self.extended
                          else protocol.untyped_parameters(function["parameters"]))
            tool = Tau2Tool(name=function["name"], description=function["description"],
                            parameters=parameters)
            tool.bind(self)
            mcp.add_tool(tool)
            self._tools[function["name"]] = tool
        self._tools_key = key


class Tau2Tool(Tool):
    """One tau2 tool as an MCP tool: arguments in, the official envelope out."""

    _service: Tau2Service | None = PrivateAttr(default=None)

    def bind(self, service: Tau2Service) -> None:
        self._service = service

    async def run(self, arguments: dict[str, Any]) -> ToolResult:
        assert self._service is not None
        try:
            reply = await self._service.call_tool(self.name, arguments)
        except ConfigError as exc:
            raise ToolError(str(exc)) from exc
        return ToolResult(structured_content=reply)


def spec_from_reset(
    domain: str,
    task_id: str,
    solo_mode: object = None,
    split: str | None = None,
    max_steps: object = None,
    user_llm: str | None = None,
    user_llm_api_base: str | None = None,
    user_llm_api_key: str | None = None,
    data_dir: str | None = None,
) -> EpisodeSpec:
    """The server's episode from reset arguments (or the TAU2_* variables), with the
    official env's defaults: solo mode, 50 steps. A non-solo episode's user is the LLM
    named by `user_llm` (on `user_llm_api_base` when given, else found by litellm from
    the model string, as the official env does) or, without one, the scripted user."""
    domain = catalog.check_domain(domain)
    task = catalog.get_task(domain, task_id, split or None)
    solo = (protocol.OFFICIAL_SOLO_MODE if solo_mode is None or solo_mode == ""
            else check_bool("solo_mode", solo_mode))
    steps = protocol.OFFICIAL_MAX_STEPS if max_steps in (None, "") else int(str(max_steps))
    user = UserConfig()
    if user_llm and user_llm_api_base:
        user = UserConfig(kind="llm", endpoint=Endpoint(
            base_url=user_llm_api_base, api_key=user_llm_api_key or "EMPTY", model=user_llm))
    elif user_llm:
        user = UserConfig(kind="llm", litellm_model=user_llm)
    return EpisodeSpec(domain=domain, task_id=task.id, split=split or None, solo_mode=solo,
                       max_steps=steps, max_errors=DEFAULT_MAX_ERRORS, user=user)


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
        data_dir=os.environ.get("TAU2_DATA_DIR"),
    )


def build_server(service: Tau2Service) -> AEnvMCPServer:
    """aenv's MCP server with the service's functions, reward, health and tools."""
    import aenv.server.mcp_server as mcp_server

    started = time.time()

    async def tau2_health() -> dict[str, Any]:
        """Liveness of this server (the SDK's default probes localhost:8081 only)."""
        return {"status": "success", "message": f"{SERVER_NAME} is serving",
                "uptime_s": time.time() - started, "episodes_served": service.served}

    # AEnvMCPServer registers `default_health_handler` at /health on construction.
    mcp_server.default_health_handler = tau2_health
    server = mcp_server.create_server(name=SERVER_NAME)
    register(service, server.mcp)
    return server


def register(service: Tau2Service, mcp: FastMCP) -> None:
    """The service's functions, reward and tools, on the aenv server whose FastMCP is
    `mcp` (aenv's function registry must already serve it: `create_server` does that)."""
    from aenv import register_function, register_reward

    @register_function
    async def tau2_get_system_prompt() -> str:
        """tau2's agent system prompt for the current task (solo or with a user)."""
        return (await service.current()).session.system_prompt

    @register_function
    async def tau2_get_task_info() -> dict[str, Any]:
        """Task id, domain, ticket, tool names, policy preview, max_steps, solo_mode."""
        return await service.task_info()

    @register_function
    async def tau2_get_available_tools() -> list[dict[str, Any]]:
        """The episode's tools in OpenAI function-calling format (tau2's schemas)."""
        return tau2_tool_schemas((await service.current()).session)

    @register_function
    async def tau2_get_status() -> dict[str, Any]:
        """Step, max_steps, done, last_observation, rewards, total_reward."""
        return await service.status()

    @register_function
    async def tau2_send_message(message: str) -> dict[str, Any]:
        """Send the agent's message to the user; returns observation, reward, done."""
        return await service.send_message(message)

    @register_function
    async def tau2_done() -> dict[str, Any]:
        """Signal that the agent has completed the task."""
        return await service.done()

    if service.extended:

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
            """Start a new episode on (domain, task_id, solo_mode); returns the task info,
            the system prompt and the user's opening messages."""
            spec = spec_from_reset(domain, task_id, solo_mode, split, max_steps,
                                   user_llm, user_llm_api_base, user_llm_api_key)
            async with service.lock:
                episode = await service.reset(spec)
            return {**await service.task_info(), "system_prompt": episode.session.system_prompt,
                    "opening": [m.model_dump(mode="json") for m in episode.opening]}

        @register_reward
        async def tau2_reward(termination_reason: str | None = None) -> dict[str, Any]:
            """Rewards of the episode's steps and their total; with `termination_reason`,
            tau2's evaluation of an episode the caller ended (`reward_info`)."""
            return await service.reward(termination_reason)

        _ = (tau2_reset,)
    else:

        @register_reward
        async def tau2_reward() -> dict[str, Any]:
            """Rewards of the episode's steps and their total."""
            return await service.reward()

    _ = (tau2_get_system_prompt, tau2_get_task_info, tau2_get_available_tools, tau2_get_status,
         tau2_send_message, tau2_done, tau2_reward)
    service.sync_tools(mcp)


def service_from_environ(protocol_name: str | None = None) -> Tau2Service:
    """The service a sandbox runs: its protocol (else TAU2_ENGINE_PROTOCOL, else engine),
    its first episode from the TAU2_* variables."""
    protocol_name = protocol_name or os.environ.get("TAU2_ENGINE_PROTOCOL") or "engine"
    if protocol_name not in PROTOCOLS:
        raise ConfigError.choice("protocol", protocol_name, PROTOCOLS)
    service = Tau2Service(extended=protocol_name == "engine")
    initial = spec_from_environ()
    if initial is not None:
        service.install(service.prepare(initial))
    return service


def install_into_aenv_server() -> Tau2Service:
    """For an environment module that `python -m aenv.main` loads (the aenv image's
    `src/`): serve tau2-engine's environment on the server aenv is building."""
    from aenv.core.function_registry import get_function_registry

    mcp = get_function_registry().get_server()
    if mcp is None:
        raise ConfigError("no aenv server is being built: load this module with `python -m aenv.main`")
    service = service_from_environ()
    register(service, mcp)
    return service


def _exit_with_parent(parent_pid: int) -> None:
    """Exit as soon as the process that started this server is gone (no orphans)."""

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(host: str, port: int, protocol_name: str = "engine") -> int:
    """Run the server until it is stopped (blocking)."""
    parent = os.environ.get(PARENT_PID_VAR)
    if parent:
        _exit_with_parent(int(parent))
    from aenv import setup_logging

    setup_logging(level=30)  # SDK INFO lines per call would dominate the server's time
    server = build_server(service_from_environ(protocol_name))
    server.mcp.run(transport="streamable-http", host=host, port=port, show_banner=False,
                   log_level="warning")
    return 0
