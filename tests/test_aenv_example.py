"""AEnvironment's `tau2_rl` example, its client flow unchanged (`tests/aenv_example_flow`),
against `tau2-engine serve-env` with the real aenv SDK and the real Agents SDK: strict
tools from `list_openai_tools()`, tools over MCP, the user through `tau2_send_message`, the
reward from `call_reward({})`.

The model is a local OpenAI-compatible server playing each task's gold actions. Telecom
tasks share a handful of tickets, so the model cannot tell the task from the prompt: each
run names its task in its API key.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from engine import catalog
from engine.policies.oracle import oracle_script
from engine.policies.scripted import SayStep, ToolStep
from tests.aenv_helpers import serve_env
from tests.fake_openai_server import FakeOpenAI, Reply, Responder, scripted_user


def gold_model(task: Any, *, solo_mode: bool) -> Responder:
    """One task's gold actions, then `done` (solo) or the closing words, then a final
    answer; one step per request, whatever the conversation holds (the example starts a
    new conversation every 10 turns and after every message to the user)."""
    steps = [*oracle_script(task, solo_mode=solo_mode).steps]
    if solo_mode:
        steps.append(SayStep("The ticket is resolved."))
    played = itertools.count()

    def respond(body: dict[str, Any]) -> Reply:
        step = steps[min(next(played), len(steps) - 1)]
        if isinstance(step, ToolStep):
            offered = [t["function"]["name"] for t in body["tools"]]
            name = next(n for n in offered if n.rsplit("/", 1)[-1] == step.name)
            return None, [(name, json.dumps(step.arguments))]
        return step.text, []

    return respond


def key_of(task: Any) -> str:
    return f"gold:{task.id}"


def run_example(address: str, model: FakeOpenAI, task: Any, domain: str,
                **env: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.aenv_example_flow", domain, task.id],
        env={**os.environ, "DUMMY_INSTANCE_IP": address, "OPENAI_BASE_URL": model.base_url,
             "OPENAI_API_KEY": key_of(task), **env},
        capture_output=True, text=True, timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def same_ticket_pair() -> list[Any]:
    """Two telecom tasks with one ticket and different gold actions."""
    by_ticket: dict[str, list[Any]] = {}
    for task in catalog.task_set("telecom").tasks:
        by_ticket.setdefault(task.ticket, []).append(task)
    group = next(g for g in by_ticket.values() if len(g) > 1)
    first = group[0]
    second = next(t for t in group[1:] if t.evaluation_criteria.actions != first.evaluation_criteria.actions)
    return [first, second]


AIRLINE = catalog.task_set("airline").tasks[1]


@pytest.fixture
def model() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(lambda body: ("I cannot tell which task this is.", [])).running() as server:
        yield server


def strict_tools_only(model: FakeOpenAI) -> bool:
    """Every tool the model was offered went through the SDK's strict-schema conversion
    (closed objects, every property required)."""
    schemas = [t["function"]["parameters"] for r in model.requests for t in r.body.get("tools", [])]
    return bool(schemas) and all(
        s["additionalProperties"] is False and s["required"] == list(s["properties"]) for s in schemas)


@pytest.mark.parametrize("task", same_ticket_pair(), ids=["first", "second"])
def test_example_solves_telecom_solo_tasks_sharing_one_ticket(model: FakeOpenAI, task: Any) -> None:
    model.by_key[key_of(task)] = gold_model(task, solo_mode=True)
    with serve_env({"TAU2_DOMAIN": "telecom", "TAU2_TASK_ID": task.id}) as address:
        result = run_example(address, model, task, "telecom")
    assert result["reward"] == 1.0, result
    assert strict_tools_only(model)
    # Every tool the model saw carries the env's prefix; set_apn_settings is among them.
    names = {t["function"]["name"] for r in model.requests for t in r.body["tools"]}
    assert "tau2-env@1.0.0/set_apn_settings" in names and "tau2-env@1.0.0/done" in names


def test_example_solves_an_airline_conversation_with_the_scripted_user(model: FakeOpenAI) -> None:
    model.by_key[key_of(AIRLINE)] = gold_model(AIRLINE, solo_mode=False)
    with serve_env({"TAU2_DOMAIN": "airline", "TAU2_TASK_ID": AIRLINE.id,
                    "TAU2_SOLO_MODE": "false"}) as address:
        result = run_example(address, model, AIRLINE, "airline")
    assert result == {"reward": 1.0, "errors": []}
    assert strict_tools_only(model)
    names = {t["function"]["name"] for r in model.requests for t in r.body["tools"]}
    assert {"tau2-env@1.0.0/book_reservation", "tau2-env@1.0.0/update_reservation_flights"} <= names
    # The agent's first input is the user's opening, played by the server at reset.
    first = model.requests[0].body["messages"]
    assert first[-1]["role"] == "user" and first[-1]["content"] != "Please start working on the task."


def test_example_solves_an_airline_conversation_with_an_llm_user_named_by_litellm(
    model: FakeOpenAI,
) -> None:
    """TAU2_USER_LLM without an API base: tau2's litellm user, whose OpenAI endpoint
    litellm finds in OPENAI_BASE_URL / OPENAI_API_KEY (the server's, here the same fake
    server answering as the user under its own key)."""
    model.by_key[key_of(AIRLINE)] = gold_model(AIRLINE, solo_mode=False)
    model.by_key["user-key"] = scripted_user(AIRLINE)
    server_env = {"TAU2_DOMAIN": "airline", "TAU2_TASK_ID": AIRLINE.id, "TAU2_SOLO_MODE": "false",
                  "TAU2_USER_LLM": "openai/user-sim", "OPENAI_BASE_URL": model.base_url,
                  "OPENAI_API_KEY": "user-key"}
    with serve_env(server_env) as address:
        result = run_example(address, model, AIRLINE, "airline", TAU2_USER_LLM="openai/user-sim")
    assert result == {"reward": 1.0, "errors": []}
    user_requests = [r for r in model.requests if r.headers["authorization"] == "Bearer user-key"]
    assert user_requests and all(r.body["model"] == "user-sim" for r in user_requests)
