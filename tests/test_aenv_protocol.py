"""The official tau2 env's protocol pieces: tool schemas the Agents SDK's strict mode
accepts, the official env's untyped schemas as FastMCP derives them, tool envelopes and
what a server offers."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from tests.prerequisites import require_aenv

require_aenv()  # fastmcp and the server come with the aenv extra

from agents import FunctionTool  # noqa: E402
from agents.exceptions import UserError  # noqa: E402
from fastmcp.tools.tool import Tool  # noqa: E402

from engine import catalog  # noqa: E402
from engine.config import EpisodeSpec  # noqa: E402
from engine.envs.aenv_protocol import (  # noqa: E402
    ServerOffer,
    read_tool_reply,
    strict_parameters,
    trim_observation,
    untyped_parameters,
)
from engine.envs.aenv_server import tau2_tool_schemas  # noqa: E402
from engine.envs.local import LocalSession, build_environment  # noqa: E402


def offered(domain: str, solo_mode: bool) -> list[dict[str, Any]]:
    import anyio

    task = catalog.task_set(domain).tasks[0]
    spec = EpisodeSpec(domain=domain, task_id=task.id, solo_mode=solo_mode)
    session = LocalSession(spec, task, build_environment(spec, task), anyio.CapacityLimiter(1))
    return [t["function"] for t in tau2_tool_schemas(session)]


def strict_tool(name: str, parameters: dict[str, Any]) -> FunctionTool:
    async def invoke(ctx: Any, raw: str) -> str:
        return raw

    return FunctionTool(name=name, description="", params_json_schema=parameters,
                        on_invoke_tool=invoke, strict_json_schema=True)


@pytest.mark.parametrize(
    ("domain", "solo_mode"),
    [("airline", False), ("mock", False), ("mock", True), ("retail", False), ("telecom", False),
     ("telecom", True)],
)
def test_every_served_schema_builds_a_strict_agents_sdk_tool(domain: str, solo_mode: bool) -> None:
    for function in offered(domain, solo_mode):
        strict_tool(function["name"], strict_parameters(function["parameters"]))


def test_tau2_schemas_themselves_fail_strict_mode_where_the_issue_found_it() -> None:
    """The failure being fixed: tau2's `Model | dict` arguments are open objects."""
    telecom = {f["name"]: f for f in offered("telecom", True)}
    with pytest.raises(UserError, match="additionalProperties"):
        strict_tool("set_apn_settings", json.loads(json.dumps(telecom["set_apn_settings"]["parameters"])))
    closed = strict_parameters(telecom["set_apn_settings"]["parameters"])
    assert "additionalProperties" not in json.dumps(closed).replace('"additionalProperties": false', "")
    # The typed alternative stays: the model is still told the APN settings' fields.
    assert "APNSettings" in json.dumps(closed)


def test_every_conversation_and_solo_offer_ends_with_done() -> None:
    for domain, solo in [("airline", False), ("telecom", True), ("telecom", False)]:
        names = [f["name"] for f in offered(domain, solo)]
        assert names[-1] == "done" and names.count("done") == 1


def untyped_function(name: str, parameters: dict[str, Any]) -> Any:
    """A function with the official env's wrapper signature: every argument untyped,
    optional ones defaulting to None."""
    required = set(parameters.get("required") or [])

    def wrapper(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    wrapper.__name__ = name
    wrapper.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          **({} if p in required else {"default": None}))
        for p in parameters.get("properties") or {}
    ])
    return wrapper


@pytest.mark.parametrize("domain", ["airline", "telecom"])
def test_official_mode_schemas_are_what_fastmcp_makes_of_untyped_wrappers(domain: str) -> None:
    for function in offered(domain, domain == "telecom"):
        derived = Tool.from_function(untyped_function(function["name"], function["parameters"]))
        assert untyped_parameters(function["parameters"]) == derived.parameters, function["name"]


@pytest.mark.parametrize(
    ("text", "mcp_error", "expected"),
    [
        ('{"observation":"{\\"a\\": 1}","reward":0.0,"done":false,"step":3}', False,
         ('{"a": 1}', False, False)),
        ('{"observation":"Error: no such customer","reward":0.0,"done":false,"step":1}', False,
         ("Error: no such customer", True, False)),
        ('{"observation":"ok","reward":1.0,"done":true,"step":9,"error":false}', False, ("ok", False, True)),
        ('{"observation":"Error: x","reward":0.0,"done":false,"step":1,"error":false}', False,
         ("Error: x", False, False)),
        ("1 validation error for call[f]", True, ("1 validation error for call[f]", True, False)),
        ("plain text", False, ("plain text", False, False)),
    ],
    ids=["envelope", "tau2-error-text", "done", "explicit-flag-wins", "mcp-error", "not-an-envelope"],
)
def test_tool_replies_read_from_the_envelope(
    text: str, mcp_error: bool, expected: tuple[str, bool, bool]
) -> None:
    reply = read_tool_reply(text, mcp_error=mcp_error)
    assert (reply.observation, reply.error, reply.done) == expected


def test_observations_lose_their_role_prefix() -> None:
    assert trim_observation("user: Hi, my phone is broken. ") == "Hi, my phone is broken."
    assert trim_observation('tool: {"x": 1}') == '{"x": 1}'
    assert trim_observation("") == ""


def test_server_offer_from_the_function_listing() -> None:
    official = ServerOffer.from_listing({
        "functions": [{"name": "tau2_get_status"}, {"name": "tau2_get_available_tools"}],
        "reward": [{"name": "tau2_reward", "parameters": {}}],
    })
    assert not official.can_reset and not official.takes_termination_reason and official.lists_tau2_tools
    engine = ServerOffer.from_listing({
        "functions": [{"name": "tau2_reset"}],
        "reward": [{"name": "tau2_reward",
                    "parameters": {"termination_reason": {"type": "str | None", "default": "None"}}}],
    })
    assert engine.can_reset and engine.takes_termination_reason and not engine.lists_tau2_tools
