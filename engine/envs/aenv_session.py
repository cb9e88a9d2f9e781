"""One episode over an `aenv.Environment`: the client side shared by `aenv-local` (a pool
of local servers) and `aenv` (remote AEnvironment sandboxes).

The server is `engine.envs.aenv_server`. Tools go over MCP (names shown to the model are
tau2's bare names: aenv's `env@version/` prefix is stripped), the user and the reward
through the server's functions. Any failure of the client or the server (connection
lost, server dead, bad reply) is an `EnvError`: the episode ends `infra_error`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from engine import catalog
from engine.envs.base import Score, ToolSchema
from engine.envs.local import history_of
from engine.errors import EnvError
from engine.trajectory import tool_message

if TYPE_CHECKING:
    from aenv import Environment
    from tau2.data_model.message import Message, ToolCall, ToolMessage
    from tau2.data_model.tasks import Task

    from engine.config import EpisodeSpec

T = TypeVar("T")

DEFAULT_ENV_NAME = "tau2-env@1.0.0"


def quiet_sdk_logging() -> None:
    """aenv logs every call (with full results) at INFO to stdout; keep its warnings only,
    through stdlib logging."""
    from aenv import setup_logging

    setup_logging(level=logging.ERROR)


def bare_name(name: str) -> str:
    """`tau2-env@1.0.0/get_customer` -> `get_customer` (aenv prefixes tool names)."""
    return name.rsplit("/", 1)[-1]


def reset_arguments(spec: EpisodeSpec) -> dict[str, Any]:
    """`tau2_reset` arguments for an episode (the TAU2_* variables, as arguments)."""
    args: dict[str, Any] = {
        "domain": spec.domain,
        "task_id": spec.task_id,
        "solo_mode": spec.solo_mode,
        "split": spec.split,
        "max_steps": spec.max_steps,
    }
    endpoint = spec.user.endpoint if spec.user.kind == "llm" else None
    if endpoint is not None:
        args.update(user_llm=endpoint.model, user_llm_api_base=endpoint.base_url,
                    user_llm_api_key=endpoint.api_key)
    return args


def environment_variables(spec: EpisodeSpec) -> dict[str, str]:
    """The TAU2_* variables of the original example, for a new remote sandbox."""
    out = {"TAU2_" + k.upper(): v for k, v in reset_arguments(spec).items() if v is not None}
    out["TAU2_SOLO_MODE"] = "true" if spec.solo_mode else "false"
    return {k: str(v) for k, v in out.items()}


async def guarded(address: str, what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run an aenv client call; any failure becomes an EnvError naming the server.
    A cancellation the SDK swallowed (it catches CancelledError) is re-raised first."""
    try:
        return await call()
    except Exception as exc:
        await anyio.lowlevel.checkpoint_if_cancelled()
        raise EnvError(
            f"aenv server {address}: {what} failed: {type(exc).__name__}: {exc}"
        ) from exc


@dataclass
class ToolCache:
    """Tool schemas per (domain, solo_mode): a reused server lists its tools once."""

    schemas: dict[tuple[str, bool], list[ToolSchema]]

    @classmethod
    def empty(cls) -> ToolCache:
        return cls({})


class AenvSession:
    """An EnvSession whose environment lives behind an aenv server."""

    def __init__(self, env: Environment, address: str, spec: EpisodeSpec, task: Task,
                 system_prompt: str, tools: Sequence[ToolSchema]) -> None:
        self.env = env
        self.address = address
        self.spec = spec
        self.task: Task = task
        self.solo_mode: bool = spec.solo_mode
        self.system_prompt: str = system_prompt
        self.tools: Sequence[ToolSchema] = list(tools)
        self.history: Sequence[Message] = history_of(task)

    async def call_tool(self, call: ToolCall) -> ToolMessage:
        result = await guarded(self.address, f"tool {call.name!r}",
                               lambda: self.env.call_tool(call.name, dict(call.arguments)))
        text = "\n".join(str(item.get("text", "")) for item in result.content
                         if isinstance(item, dict) and item.get("type") == "text")
        return tool_message(call.id, text, call.requestor, bool(result.is_error))

    async def send_to_user(self, text: str) -> list[Message]:
        if self.solo_mode:
            raise EnvError("solo-mode episodes have no user to talk to")
        reply = await self._function("tau2_send_message", {"message": text})
        return [parse_message(m) for m in reply.get("messages", [])]

    async def score(self, trajectory: Sequence[Message], termination: str) -> Score:
        if self.solo_mode and termination == "agent_stop":
            await self._function("tau2_done", {})  # the server records tau2's stop message
        reply = await guarded(self.address, "reward",
                              lambda: self.env.call_reward({"termination_reason": termination}))
        if not isinstance(reply, dict) or "total_reward" not in reply:
            raise EnvError(f"aenv server {self.address}: reward reply without total_reward: "
                           f"{reply!r:.200}")
        return Score(reward=float(reply["total_reward"]),
                     reward_info=dict(reply.get("reward_info") or {}))

    async def _function(self, name: str, arguments: dict[str, Any]) -> Any:
        return await guarded(self.address, name, lambda: self.env.call_function(name, arguments))


def parse_message(data: dict[str, Any]) -> Message:
    from tau2.data_model.message import AssistantMessage, ToolMessage, UserMessage

    kinds: dict[str, Any] = {"user": UserMessage, "tool": ToolMessage,
                             "assistant": AssistantMessage}
    kind = kinds.get(str(data.get("role")))
    if kind is None:
        raise EnvError(f"unexpected message from the aenv server: {json.dumps(data)[:200]}")
    message: Message = kind.model_validate(data)
    return message


def _matches(info: dict[str, Any], spec: EpisodeSpec) -> bool:
    return (info.get("domain") == spec.domain and info.get("task_id") == spec.task_id
            and info.get("solo_mode") == spec.solo_mode and info.get("split") == spec.split)


async def open_session(env: Environment, address: str, spec: EpisodeSpec, *, reset: bool,
                       cache: ToolCache | None = None) -> AenvSession:
    """Bring the server to `spec`'s task and read its prompt and tools.

    `reset=False` (a fresh remote sandbox configured by TAU2_* variables) resets only when
    the server holds another episode than `spec`'s."""
    task = catalog.get_task(spec.domain, spec.task_id, spec.split)

    async def function(name: str, arguments: dict[str, Any]) -> Any:
        return await guarded(address, name, lambda: env.call_function(name, arguments))

    info: dict[str, Any] = {}
    if not reset:
        info = await function("tau2_get_task_info", {})
    if reset or not _matches(info, spec):
        info = await function("tau2_reset", reset_arguments(spec))
    prompt = info.get("system_prompt")
    if not isinstance(prompt, str):
        prompt = str(await function("tau2_get_system_prompt", {}))
    key = (spec.domain, spec.solo_mode)
    tools = cache.schemas.get(key) if cache is not None else None
    if tools is None or [t.name for t in tools] != info.get("tools"):
        listed = await guarded(address, "list_tools", env.list_tools)
        tools = [ToolSchema(bare_name(t["name"]), t.get("description") or "", t["inputSchema"])
                 for t in listed]
        if cache is not None:
            cache.schemas[key] = tools
    return AenvSession(env, address, spec, task, prompt, tools)
