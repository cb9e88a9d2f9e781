"""The protocol of AEnvironment's official tau2 env (`aenv/builtin-envs/tau2`,
`src/tau2_tools.py`), which `serve-env` speaks and the aenv backends talk to.

The official env wraps tau2's `AgentGymEnv`; every agent action is one gym step. What a
client sees (docs/aenv-protocol.md maps each item to the official code):

- MCP tools: tau2's agent tools (plus the user's tools in solo mode) and `done`, in every
  mode, under tau2's names. Each answers the JSON envelope
  `{"observation", "reward", "done", "step"}`.
- Functions (`/functions/<name>`): `tau2_get_system_prompt`, `tau2_get_task_info`,
  `tau2_get_available_tools`, `tau2_get_status`, `tau2_send_message(message)`,
  `tau2_done()`; the reward at `/task/reward` takes no arguments.
- The episode comes from `TAU2_DOMAIN`, `TAU2_TASK_ID`, `TAU2_SOLO_MODE` (default true),
  `TAU2_MAX_STEPS` (default 50), `TAU2_USER_LLM`, `TAU2_USER_LLM_API_BASE`/`_API_KEY`.
  Reset plays tau2's greeting and the user's opening (non-solo); the observation is the
  text of the last message to the agent without its `user: ` / `tool: ` prefix.
- `done` is flagged when tau2's orchestrator ends: the agent's `done` or stop token, the
  user's stop, the step or error budget, or text from a solo agent (reward 0). Rewards
  are per step: 0.0 until the episode ends, then tau2's evaluation; `total_reward` is
  their sum.

`serve-env` adds, without changing any of the above: `tau2_reset` (another task on the
same server), the reward's optional `termination_reason`, `reward_info` and
`termination_reason` in reward results, an `error` flag in tool envelopes, the user's
messages (`messages`) in `tau2_send_message` results, and typed tool schemas. Clients
find out which of these a server offers from `/functions/list` (`ServerOffer`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

GET_SYSTEM_PROMPT = "tau2_get_system_prompt"
GET_TASK_INFO = "tau2_get_task_info"
GET_AVAILABLE_TOOLS = "tau2_get_available_tools"
GET_STATUS = "tau2_get_status"
SEND_MESSAGE = "tau2_send_message"
DONE_FUNCTION = "tau2_done"
REWARD_FUNCTION = "tau2_reward"
RESET_FUNCTION = "tau2_reset"
"""serve-env only: start another episode on the same server."""

OFFICIAL_MAX_STEPS = 50
"""The official env's TAU2_MAX_STEPS default."""
OFFICIAL_SOLO_MODE = True
"""The official env's TAU2_SOLO_MODE default."""

TERMINATION_ARGUMENT = "termination_reason"

OBSERVATION_PREFIXES = ("user: ", "tool: ")
TOOL_ERROR_PREFIX = "Error: "
"""tau2's `Environment.get_response` content for a failed tool call."""


def trim_observation(observation: str) -> str:
    """The official `_get_last_obs`: the last message's text without its role prefix."""
    for prefix in OBSERVATION_PREFIXES:
        if observation.startswith(prefix):
            return observation[len(prefix):].strip()
    return observation.strip()


def envelope(observation: str, reward: float, done: bool, step: int) -> dict[str, Any]:
    """A tool's answer, as the official env's tool wrapper builds it."""
    return {"observation": observation, "reward": reward, "done": done, "step": step}


@dataclass(frozen=True)
class ToolReply:
    """A tool envelope read back by a client."""

    observation: str
    error: bool
    done: bool


def read_tool_reply(text: str, *, mcp_error: bool) -> ToolReply:
    """The tool message the agent sees, from an MCP tool result's text.

    The envelope carries no error flag in the official env; tau2 marks a failed call by
    its content (`Error: ...`), which is what the agent saw there too. An MCP-level error
    (e.g. arguments the server's schema rejects) is an error tool message with its text.
    """
    if mcp_error:
        return ToolReply(text, True, False)
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict) or "observation" not in data:
        return ToolReply(text, text.startswith(TOOL_ERROR_PREFIX), False)
    observation = str(data.get("observation") or "")
    error = data.get("error")
    if not isinstance(error, bool):
        error = observation.startswith(TOOL_ERROR_PREFIX)
    return ToolReply(observation, error, bool(data.get("done")))


@dataclass(frozen=True)
class ServerOffer:
    """What a tau2 aenv server offers beyond the official protocol."""

    functions: frozenset[str]
    reward_parameters: frozenset[str]

    @property
    def can_reset(self) -> bool:
        return RESET_FUNCTION in self.functions

    @property
    def lists_tau2_tools(self) -> bool:
        return GET_AVAILABLE_TOOLS in self.functions

    @property
    def takes_termination_reason(self) -> bool:
        return TERMINATION_ARGUMENT in self.reward_parameters

    @classmethod
    def from_listing(cls, listing: dict[str, Any]) -> ServerOffer:
        """From the aenv SDK's `Environment.list_functions()` answer."""
        functions = frozenset(str(f.get("name")) for f in listing.get("functions") or [])
        rewards = listing.get("reward") or []
        parameters = rewards[0].get("parameters") if rewards else None
        return cls(functions, frozenset(parameters or {}))


# -- tool schemas ----------------------------------------------------------------------


def _is_open_object(schema: object) -> bool:
    return (isinstance(schema, dict) and schema.get("type") == "object"
            and bool(schema.get("additionalProperties")) and not schema.get("properties"))


def _close(node: Any) -> Any:
    if isinstance(node, list):
        return [_close(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _close(value) for key, value in node.items()}
    alternatives = out.get("anyOf")
    if isinstance(alternatives, list) and any(_is_open_object(a) for a in alternatives):
        kept = [a for a in alternatives if not _is_open_object(a)]
        if len(kept) == 1:
            del out["anyOf"]
            out = {**kept[0], **out}
        elif kept:
            out["anyOf"] = kept
    return out


def strict_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """tau2's schema, accepted by the Agents SDK's strict mode (which aenv's
    `list_openai_tools` uses): `Model | dict` arguments (tau2 validates the dict into the
    model anyway) keep only their model; everything else is tau2's own schema."""
    closed: dict[str, Any] = _close(copy.deepcopy(parameters))
    return closed


def untyped_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """The schema the official env's MCP tools carry: its tool wrappers have untyped
    signatures, so FastMCP describes each argument by its title only."""
    required = list(parameters.get("required") or [])
    properties: dict[str, Any] = {}
    for name in parameters.get("properties") or {}:
        prop: dict[str, Any] = {"title": name.replace("_", " ").title()}
        if name not in required:
            prop["default"] = None
        properties[name] = prop
    out: dict[str, Any] = {"properties": properties, "type": "object"}
    if required:
        out["required"] = required
    return out
