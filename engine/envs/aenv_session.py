"""One episode over an `aenv.Environment`: the client side shared by `aenv-local` (a pool
of local servers) and `aenv` (remote AEnvironment sandboxes).

The server is AEnvironment's official tau2 env or `serve-env` (`engine.envs.aenv_server`);
both speak the official protocol (`engine.envs.aenv_protocol`), and the session uses what
serve-env adds when `/functions/list` shows it: `tau2_reset`, the reward's
`termination_reason` and `reward_info`, the user's full messages. Tools go over MCP (names
shown to the model are tau2's bare names with tau2's schemas), their answers are read from
the official envelope; the user and the reward go through the server's functions. Any
failure of the client or the server (connection lost, server dead, bad reply) is an
`EnvError`: the episode ends `infra_error`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from engine import catalog
from engine.envs import aenv_protocol as protocol
from engine.envs.aenv_protocol import ServerOffer
from engine.envs.base import Score, ToolSchema
from engine.envs.local import history_of
from engine.errors import EnvError, JudgeError
from engine.trajectory import DONE_TOOL, tool_message

if TYPE_CHECKING:
    from aenv import Environment
    from tau2.data_model.message import Message, ToolCall, ToolMessage
    from tau2.data_model.simulation import NLAssertionCheck
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
    if spec.data_dir is not None:
        args["data_dir"] = spec.data_dir
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
    """What a reused server offers, looked up once: its extensions, and its tool schemas
    per (domain, solo_mode)."""

    schemas: dict[tuple[str, bool], list[ToolSchema]]
    offer: ServerOffer | None = None

    @classmethod
    def empty(cls) -> ToolCache:
        return cls({})


class AenvSession:
    """An EnvSession whose environment lives behind an aenv server (AEnvironment's
    official tau2 env or `serve-env`)."""

    def __init__(self, env: Environment, address: str, spec: EpisodeSpec, task: Task,
                 system_prompt: str, tools: Sequence[ToolSchema], offer: ServerOffer,
                 opening: list[Message] | None) -> None:
        self.env = env
        self.address = address
        self.spec = spec
        self.task: Task = task
        self.solo_mode: bool = spec.solo_mode
        self.system_prompt: str = system_prompt
        self.tools: Sequence[ToolSchema] = list(tools)
        self.history: Sequence[Message] = history_of(task)
        self.offer = offer
        self._opening = opening
        self._server_done = False

    tool_calls_wait = True
    user_replies_wait = True
    """Both are requests to the aenv server."""

    async def call_tool(self, call: ToolCall) -> ToolMessage:
        result = await guarded(self.address, f"tool {call.name!r}",
                               lambda: self.env.call_tool(call.name, dict(call.arguments)))
        text = "\n".join(str(item.get("text", "")) for item in result.content
                         if isinstance(item, dict) and item.get("type") == "text")
        reply = protocol.read_tool_reply(text, mcp_error=bool(result.is_error))
        self._server_done = self._server_done or reply.done
        return tool_message(call.id, reply.observation, call.requestor, reply.error)

    async def send_to_user(self, text: str) -> list[Message]:
        """The user's answer. The server played tau2's greeting (the engine's first words)
        and the user's opening when it reset the episode: the first answer is that."""
        if self.solo_mode:
            raise EnvError("solo-mode episodes have no user to talk to")
        if self._opening is not None:
            opening, self._opening = self._opening, None
            return opening
        reply = await self._function(protocol.SEND_MESSAGE, {"message": text})
        if not isinstance(reply, dict) or "observation" not in reply:
            raise EnvError(f"aenv server {self.address}: {protocol.SEND_MESSAGE} reply without "
                           f"observation: {reply!r:.200}")
        self._server_done = self._server_done or bool(reply.get("done"))
        messages = reply.get("messages")
        if isinstance(messages, list):
            return [parse_message(m) for m in messages]
        return [user_text(str(reply["observation"]))]

    async def score(
        self,
        trajectory: Sequence[Message],
        termination: str,
        nl_checks: Sequence[NLAssertionCheck] | None = None,
    ) -> Score:
        if nl_checks is not None:
            raise JudgeError(
                "tasks scored on NL assertions are not supported on the aenv backends yet; "
                "use --backend local"
            )
        if termination == "agent_stop" and not self._server_done:
            await self._function(protocol.DONE_FUNCTION, {})  # the server records tau2's stop
        arguments = ({protocol.TERMINATION_ARGUMENT: termination}
                     if self.offer.takes_termination_reason else {})
        reply = await guarded(self.address, "reward", lambda: self.env.call_reward(arguments))
        if not isinstance(reply, dict) or "total_reward" not in reply:
            raise EnvError(f"aenv server {self.address}: reward reply without total_reward: "
                           f"{reply!r:.200}")
        return Score(reward=float(reply["total_reward"]),
                     reward_info=dict(reply.get("reward_info") or {}))

    async def _function(self, name: str, arguments: dict[str, Any]) -> Any:
        return await guarded(self.address, name, lambda: self.env.call_function(name, arguments))


def user_text(text: str) -> Message:
    from tau2.data_model.message import UserMessage

    return UserMessage(role="user", content=text)


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
    same = (info.get("domain") == spec.domain and info.get("task_id") == spec.task_id
            and info.get("solo_mode") == spec.solo_mode)
    return same and ("split" not in info or info.get("split") == spec.split)


def _describe(info: dict[str, Any]) -> str:
    return (f"domain={info.get('domain')!r} task_id={info.get('task_id')!r} "
            f"solo_mode={info.get('solo_mode')!r}")


async def probe(env: Environment, address: str) -> ServerOffer:
    """Which of serve-env's extensions the server offers (none: the official env)."""
    listing = await guarded(address, "list_functions", env.list_functions)
    if not isinstance(listing, dict):
        raise EnvError(f"aenv server {address}: function listing is not an object: {listing!r:.200}")
    return ServerOffer.from_listing(listing)


async def _tool_schemas(env: Environment, address: str, offer: ServerOffer) -> list[ToolSchema]:
    """tau2's own schemas when the server lists them (both servers do), else the MCP
    tools' schemas."""
    if offer.lists_tau2_tools:
        listed = await guarded(address, protocol.GET_AVAILABLE_TOOLS,
                               lambda: env.call_function(protocol.GET_AVAILABLE_TOOLS, {}))
        functions = [t.get("function", t) for t in listed or []]
        return [ToolSchema(f["name"], f.get("description") or "", f["parameters"]) for f in functions]
    tools = await guarded(address, "list_tools", env.list_tools)
    return [ToolSchema(bare_name(t["name"]), t.get("description") or "", t["inputSchema"])
            for t in tools]


async def open_session(env: Environment, address: str, spec: EpisodeSpec, *, reset: bool,
                       cache: ToolCache | None = None) -> AenvSession:
    """Bring the server to `spec`'s task and read its prompt, tools and (non-solo) the
    user's opening.

    `reset=False` (a fresh remote sandbox configured by TAU2_* variables) resets only when
    the server holds another episode than `spec`'s, which needs serve-env's `tau2_reset`."""
    task = catalog.get_task(spec.domain, spec.task_id, spec.split)

    async def function(name: str, arguments: dict[str, Any]) -> Any:
        return await guarded(address, name, lambda: env.call_function(name, arguments))

    offer = cache.offer if cache is not None else None
    if offer is None:
        offer = await probe(env, address)
        if cache is not None:
            cache.offer = offer
    info: dict[str, Any] = {}
    if not reset:
        info = await function(protocol.GET_TASK_INFO, {})
    opening: list[Message] | None = None
    if reset or not _matches(info, spec):
        if not offer.can_reset:
            held = f"holds {_describe(info)}" if info else "cannot switch tasks"
            raise EnvError(f"aenv server {address} {held}; the episode needs domain={spec.domain!r} "
                           f"task_id={spec.task_id!r} solo_mode={spec.solo_mode!r}, and the server "
                           f"offers no {protocol.RESET_FUNCTION} (AEnvironment's official tau2 env "
                           "takes its task from the TAU2_* variables it was created with)")
        info = await function(protocol.RESET_FUNCTION, reset_arguments(spec))
        if not spec.solo_mode:
            opening = [parse_message(m) for m in info.get("opening") or []]
    elif not spec.solo_mode:
        status = await function(protocol.GET_STATUS, {})
        opening = [user_text(str(status.get("last_observation") or ""))]
    prompt = info.get("system_prompt")
    if not isinstance(prompt, str):
        prompt = str(await function(protocol.GET_SYSTEM_PROMPT, {}))
    key = (spec.domain, spec.solo_mode)
    tools = cache.schemas.get(key) if cache is not None else None
    if tools is None or [t.name for t in tools] != info.get("tools"):
        tools = await _tool_schemas(env, address, offer)
        if cache is not None:
            cache.schemas[key] = tools
    if not spec.solo_mode:  # the agent of a conversation ends it by words, as tau2's LLMAgent
        tools = [t for t in tools if t.name != DONE_TOOL]
    return AenvSession(env, address, spec, task, prompt, tools, offer, opening)
