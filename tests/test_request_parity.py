"""The `openai` policy's requests are those of stock tau2's agents, on the wire.

Both sides talk to the same recording server: the engine's episode, and stock tau2's own
`LLMSoloAgent` / `LLMAgent` (through tau2's `generate()` and litellm, as `tau2 run`
builds them) asked to continue each history the engine sent. Their request bodies must
agree field by field: prompt, tools, tool_choice, history, sampling.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from engine import tau2lib
from engine.config import Endpoint, EngineConfig, EpisodeSpec, PolicyConfig, Sampling, UserConfig
from engine.engine import Engine
from engine.events import EventLog, MemorySink
from engine.results import EpisodeResult
from engine.trajectory import messages_from_events
from tests.fake_openai_server import FakeOpenAI, distinct_ticket_tasks, gold_agent

# litellm's first completion() imports pydantic models that warn about themselves
pytestmark = pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning")

KEY = "sk-parity"
MODEL = "policy-m"
SAMPLING = Sampling(temperature=0.0, max_completion_tokens=512, seed=7)
SOLO_TASK = distinct_ticket_tasks("telecom")[0]


def _airline_task() -> Any:
    from engine import catalog

    # a task whose gold actions are all the agent's: the scripted user then only talks
    return next(
        t
        for t in catalog.task_set("airline").tasks
        if t.evaluation_criteria and t.evaluation_criteria.actions
    )


AIRLINE_TASK = _airline_task()


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    responders = {
        True: gold_agent([SOLO_TASK], solo_mode=True),
        False: gold_agent([AIRLINE_TASK], solo_mode=False),
    }

    def respond(body: dict[str, Any]) -> Any:
        solo = body["messages"][0]["content"].find("<ticket>") >= 0
        return responders[solo](body)

    with FakeOpenAI(respond).running() as srv:
        yield srv


async def _engine_episode(
    server: FakeOpenAI, domain: str, task: Any, solo: bool
) -> tuple[EpisodeResult, list[dict[str, Any]], MemorySink]:
    server.requests.clear()
    spec = EpisodeSpec(
        domain=domain,
        task_id=task.id,
        solo_mode=solo,
        seed=0,
        policy=PolicyConfig(
            name="openai",
            endpoint=Endpoint(base_url=server.base_url, api_key=KEY, model=MODEL, timeout_s=30),
            sampling=SAMPLING,
        ),
        user=UserConfig(kind="scripted"),
    )
    sink = MemorySink()
    config = EngineConfig(concurrency=1)
    engine = Engine(config, EventLog(config.run_id, [sink]))
    results: list[EpisodeResult] = []
    try:
        await engine.run([spec], results.append)
    finally:
        await engine.aclose()
    return results[0], [r.body for r in server.requests], sink


def _stock_agent(server: FakeOpenAI, domain: str, task: Any, solo: bool) -> Any:
    """The agent `tau2 run` builds (tau2.run.run_task) on this server, via litellm."""
    tau2lib.load()
    from tau2.agent.llm_agent import LLMAgent, LLMSoloAgent
    from tau2.registry import registry

    llm_args = {
        "api_base": server.base_url,
        "api_key": KEY,
        "temperature": SAMPLING.temperature,
        "max_tokens": SAMPLING.max_completion_tokens,
        "seed": SAMPLING.seed,
    }
    env = registry.get_env_constructor(domain)(solo_mode=solo)
    if solo:
        user_tools = env.get_user_tools() if env.user_tools else []
        return LLMSoloAgent(
            tools=env.get_tools() + user_tools,
            domain_policy=env.get_policy(),
            task=task,
            llm=f"openai/{MODEL}",
            llm_args=llm_args,
        )
    return LLMAgent(
        tools=env.get_tools(), domain_policy=env.get_policy(), llm=f"openai/{MODEL}", llm_args=llm_args
    )


def _stock_request(server: FakeOpenAI, agent: Any, history: list[Any]) -> dict[str, Any]:
    """The request stock `agent` sends to continue `history` (its own view of it)."""
    server.requests.clear()
    if history:
        state = agent.get_init_state(message_history=copy.deepcopy(history[:-1]))
        agent.generate_next_message(copy.deepcopy(history[-1]), state)
    else:
        agent.generate_next_message(None, agent.get_init_state())
    (request,) = server.requests
    return request.body


def _agent_view(messages: list[Any]) -> list[Any]:
    """What tau2's agent keeps: not the user's own tool calls and their results."""
    return [
        m
        for m in messages
        if not (m.role == "user" and m.tool_calls) and not (m.role == "tool" and m.requestor == "user")
    ]


def _normalized(body: dict[str, Any]) -> dict[str, Any]:
    """Equal meaning, equal form: the engine sends `content: ""` beside tool calls where
    litellm leaves `content` out (see engine.policies.openai.tau2_messages), and litellm
    copies each tool call's name next to its `function`."""
    out = dict(body)
    messages = []
    for message in body["messages"]:
        message = {k: v for k, v in message.items() if v is not None}
        if message.get("tool_calls") and message.get("content") == "":
            del message["content"]
        if "tool_calls" in message:
            message["tool_calls"] = [
                {k: v for k, v in call.items() if k != "name"} for call in message["tool_calls"]
            ]
        messages.append(message)
    out["messages"] = messages
    return out


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("domain", "solo", "tool_choice"),
    [("telecom", True, "required"), ("airline", False, "auto")],
    ids=["solo-telecom", "non-solo-airline"],
)
async def test_every_request_equals_stock_tau2_agents_request_for_the_same_history(
    server: FakeOpenAI, domain: str, solo: bool, tool_choice: str
) -> None:
    task = SOLO_TASK if solo else AIRLINE_TASK
    result, sent, sink = await _engine_episode(server, domain, task, solo)
    assert result.status.value == "completed" and result.reward == 1.0
    assert len(sent) >= 2
    view = _agent_view(messages_from_events(sink.events, solo_mode=solo))
    agent = _stock_agent(server, domain, task, solo)
    for body in sent:
        assert body["tool_choice"] == tool_choice
        assert "parallel_tool_calls" not in body
        history = view[: len(body["messages"]) - 1]  # all but the system prompt
        stock = _stock_request(server, agent, history)
        assert _normalized(body) == _normalized(stock)


@pytest.mark.anyio
async def test_assistant_tool_call_messages_carry_an_empty_content(server: FakeOpenAI) -> None:
    """llama-cpp-python's server answers 500 to an assistant message whose `content` is
    missing or null."""
    _, sent, _ = await _engine_episode(server, "telecom", SOLO_TASK, True)
    calls = [m for body in sent for m in body["messages"] if m["role"] == "assistant" and m.get("tool_calls")]
    assert calls and all(m["content"] == "" for m in calls)
