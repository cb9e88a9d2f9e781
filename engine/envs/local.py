"""The `local` backend: tau2 in this process.

Environment setup and scoring are CPU work and run in worker threads bounded by the
engine's CPU limiter; a tool call is an in-memory lookup and runs inline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from engine import catalog, scoring, taskdata
from engine.clients import ClientPool
from engine.envs import tau2_cache
from engine.envs.base import Score, ToolSchema
from engine.errors import ConfigError, EnvError
from engine.trajectory import DONE_TOOL, STOP_TOKEN, now
from engine.users.base import UserSimulator
from engine.users.llm import LLMUser
from engine.users.scripted import ScriptedUser

if TYPE_CHECKING:
    from tau2.data_model.message import Message, ToolCall, ToolMessage
    from tau2.data_model.simulation import NLAssertionCheck
    from tau2.data_model.tasks import Task
    from tau2.environment.environment import Environment

    from engine.config import EpisodeSpec, UserConfig


def done_schema() -> ToolSchema:
    """The stop tool exactly as tau2's LLMSoloAgent.add_stop_tool builds it."""
    from tau2.environment.tool import as_tool

    def done() -> str:
        """Call this function when you are done with the task."""
        return STOP_TOKEN

    fn = as_tool(done).openai_schema["function"]
    return ToolSchema(fn["name"], fn["description"], fn["parameters"])


def system_prompt(task: Task, policy: str, *, solo_mode: bool) -> str:
    """tau2's own agent system prompts (LLMAgent / LLMSoloAgent)."""
    from tau2.agent import llm_agent

    if solo_mode:
        instruction = llm_agent.AGENT_SOLO_INSTRUCTION.format(
            stop_function_name=DONE_TOOL, stop_token="###STOP###"
        )
        return llm_agent.SYSTEM_PROMPT_SOLO.format(
            agent_instruction=instruction, domain_policy=policy, ticket=task.ticket
        )
    return llm_agent.SYSTEM_PROMPT.format(agent_instruction=llm_agent.AGENT_INSTRUCTION, domain_policy=policy)


_schemas: dict[tuple[type, type, bool], tuple[ToolSchema, ...]] = {}


def tool_schemas(env: Environment, *, solo_mode: bool) -> tuple[ToolSchema, ...]:
    """The tools offered to the agent. They depend only on the toolkit classes, so they
    are built once per (toolkits, solo_mode): tau2 builds each tool's pydantic schema anew
    on every `get_tools()` call (~50 ms for telecom)."""
    key = (type(env.tools), type(env.user_tools), solo_mode)
    found = _schemas.get(key)
    if found is None:
        found = _schemas[key] = tuple(_build_tool_schemas(env, solo_mode=solo_mode))
    return found  # one shared object, so the agent's FunctionTools are built once too


def _build_tool_schemas(env: Environment, *, solo_mode: bool) -> list[ToolSchema]:
    tools = list(env.get_tools())
    if solo_mode and env.user_tools is not None:
        tools += env.get_user_tools()
    schemas = []
    for tool in tools:
        fn = tool.openai_schema["function"]
        schemas.append(ToolSchema(fn["name"], fn["description"], fn["parameters"]))
    if solo_mode:
        schemas.append(done_schema())
    return schemas


def build_environment(spec: EpisodeSpec, task: Task) -> Environment:
    """A fresh environment in the task's initial state, exactly as tau2's orchestrator."""
    env = tau2_cache.new_environment(spec.domain, solo_mode=spec.solo_mode, data_dir=spec.data_dir)
    state = task.initial_state
    env.set_state(
        initialization_data=state.initialization_data if state else None,
        initialization_actions=state.initialization_actions if state else None,
        message_history=[m.model_copy(deep=True) for m in history_of(task)],
    )
    return env


def history_of(task: Task) -> list[Message]:
    state = task.initial_state
    return list(state.message_history or []) if state else []


def score_trajectory(
    spec: EpisodeSpec,
    task: Task,
    trajectory: Sequence[Message],
    termination: str,
    predicted: Environment | None = None,
    nl_checks: Sequence[NLAssertionCheck] | None = None,
) -> Score:
    """tau2's `evaluate_simulation` on the trajectory (`engine.scoring`: same RewardInfo
    as stock, computed with cached gold states and cheap environment copies); `nl_checks`
    the judge's verdicts when the task is scored on NL assertions."""
    from tau2.data_model.simulation import SimulationRun

    simulation = SimulationRun(
        id="episode",
        task_id=task.id,
        start_time=now(),
        end_time=now(),
        duration=0.0,
        termination_reason=termination,
        messages=list(trajectory),
    )
    info = scoring.evaluate_simulation(
        simulation,
        task,
        spec.solo_mode,
        spec.domain,
        predicted,
        data_dir=spec.data_dir,
        nl_checks=nl_checks,
    )
    return Score(reward=float(info.reward), reward_info=info.model_dump(mode="json"))


_user_schemas: dict[type, list[dict[str, Any]] | None] = {}


def user_tool_schemas(env: Environment) -> list[dict[str, Any]] | None:
    """The user's tools as OpenAI tool schemas (None when the domain gives the user none);
    built once per user toolkit class, as `tool_schemas` are."""
    if env.user_tools is None:
        return None
    key = type(env.user_tools)
    if key not in _user_schemas:
        _user_schemas[key] = [tool.openai_schema for tool in env.get_user_tools()] or None
    return _user_schemas[key]


def make_user(
    config: UserConfig,
    task: Task,
    run_tool: Any,
    *,
    user_tools: list[dict[str, Any]] | None = None,
    seed: int | None = None,
    clients: ClientPool | None = None,
) -> UserSimulator:
    """The episode's user simulator; an LLM user's client comes from `clients`, the pool
    of the simulator's owner (an engine's backend, a served environment)."""
    if config.kind == "scripted":
        return ScriptedUser(task, run_tool)
    if config.kind == "llm":
        if config.endpoint is None and config.litellm_model:
            from engine.users.tau2_user import Tau2User

            return Tau2User(config.litellm_model, task, run_tool, tools=user_tools)
        if config.endpoint is None:
            raise ConfigError("user 'llm' needs an endpoint: set TAU2_USER_LLM and TAU2_USER_LLM_API_BASE")
        if clients is None:
            raise ConfigError("an LLM user needs a client pool: build the session through a backend")
        return LLMUser(
            config.endpoint, task, run_tool, tools=user_tools, seed=seed, max_tokens=config.max_tokens,
            request_args=config.request_args, client=clients.client(config.endpoint),
        )
    raise ConfigError.choice("user", config.kind, ("llm", "scripted"))


class LocalSession:
    """An in-process tau2 environment for one episode."""

    def __init__(
        self,
        spec: EpisodeSpec,
        task: Task,
        env: Environment,
        cpu: anyio.CapacityLimiter,
        user_clients: ClientPool | None = None,
    ) -> None:
        self.spec = spec
        self.task = task
        self.solo_mode = spec.solo_mode
        self.env = env
        self._cpu = cpu
        self.system_prompt = system_prompt(task, env.get_policy(), solo_mode=spec.solo_mode)
        self.tools = tool_schemas(env, solo_mode=spec.solo_mode)
        self.history = history_of(task)
        self.user: UserSimulator | None = (
            None
            if spec.solo_mode
            else make_user(
                spec.user,
                task,
                self._run_user_tool,
                user_tools=user_tool_schemas(env),
                seed=spec.seed + spec.sample,
                clients=user_clients,
            )
        )

    tool_calls_wait = False
    """tau2's tools run in this process, on the loop."""

    @property
    def user_replies_wait(self) -> bool:
        return self.user is not None and not isinstance(self.user, ScriptedUser)

    def _run_user_tool(self, call: ToolCall) -> ToolMessage:
        return self.env.get_response(call)

    async def call_tool(self, call: ToolCall) -> ToolMessage:
        return self.env.get_response(call)

    async def send_to_user(self, text: str) -> list[Message]:
        if self.user is None:
            raise EnvError("solo-mode episodes have no user to talk to")
        return await self.user.reply(text)

    async def score(
        self,
        trajectory: Sequence[Message],
        termination: str,
        nl_checks: Sequence[NLAssertionCheck] | None = None,
    ) -> Score:
        # The episode is over: its own environment holds the state tau2's replay would build.
        return await anyio.to_thread.run_sync(
            score_trajectory,
            self.spec,
            self.task,
            trajectory,
            termination,
            self.env,
            nl_checks,
            limiter=self._cpu,
        )


def prepare_domain(domain: str, split: str | None, solo_mode: bool, data_dir: str | None = None) -> None:
    """The heavy one-off work of a domain: parse its task file and database, build its
    environment template and tool schemas, hash its data. After this, an episode's
    environment is a cheap copy of shared state (a fraction of a millisecond)."""
    catalog.task_set(domain, split, data_dir)
    taskdata.data_hash(data_dir, domain)
    env = tau2_cache.new_environment(domain, solo_mode=solo_mode, data_dir=data_dir)
    tool_schemas(env, solo_mode=solo_mode)


class LocalBackend:
    name = "local"

    def __init__(self, cpu: anyio.CapacityLimiter, user_clients: ClientPool | None = None) -> None:
        self._cpu = cpu
        self.user_clients = user_clients or ClientPool(256)
        """LLM users' connections: this backend's, closed with it."""
        self._prepared: set[tuple[str, str | None, bool, str | None]] = set()
        self._preparing = anyio.Lock()

    async def _prepare(self, spec: EpisodeSpec) -> None:
        key = (spec.domain, spec.split, spec.solo_mode, spec.data_dir)
        if key in self._prepared:
            return
        async with self._preparing:
            if key not in self._prepared:
                await anyio.to_thread.run_sync(prepare_domain, *key, limiter=self._cpu)
                self._prepared.add(key)

    @asynccontextmanager
    async def session(self, spec: EpisodeSpec) -> AsyncIterator[LocalSession]:
        await self._prepare(spec)
        task = catalog.get_task(spec.domain, spec.task_id, spec.split, spec.data_dir)
        # A copy of prepared shared state: cheaper inline than a hop to a worker thread,
        # which would also contend with the loop for the GIL.
        env = build_environment(spec, task)
        yield LocalSession(spec, task, env, self._cpu, self.user_clients)

    async def aclose(self) -> None:
        await self.user_clients.aclose()
