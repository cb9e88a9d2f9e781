"""The Agents SDK adapter against the real SDK installed here (CI runs 0.4.2 and the newest)."""

from __future__ import annotations

import inspect
import json
from typing import Any

import anyio
import pytest
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

from engine import sdk
from engine.agent import EpisodeState, ObservedModel
from engine.config import plan_episodes
from engine.errors import EnvError
from engine.events import EventLog, MemorySink
from engine.policies.scripted import ScriptedModel
from engine.trajectory import Trajectory

POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD


def _call(name: str, arguments: dict[str, Any], n: int) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        type="function_call", call_id=f"call_{n}", name=name, arguments=json.dumps(arguments),
        id=f"fc_{n}", status="completed",
    )


def _say(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        type="message", id="msg", role="assistant", status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


class Replay(sdk.WholeResponseModel):
    """Answers with `outputs` in turn and keeps every request's input and keyword arguments."""

    def __init__(self, *outputs: Any) -> None:
        self.outputs = list(outputs)
        self.inputs: list[Any] = []
        self.kwargs: list[dict[str, Any]] = []

    async def get_response(
        self, system_instructions: str | None, input: Any, model_settings: sdk.ModelSettings,
        tools: list[sdk.Tool], output_schema: Any, handoffs: list[Any], tracing: Any, **kwargs: Any,
    ) -> sdk.ModelResponse:
        self.inputs.append(input)
        self.kwargs.append(kwargs)
        return sdk.ModelResponse(output=[self.outputs.pop(0)], usage=sdk.Usage(requests=1), response_id=None)


@pytest.mark.parametrize("model", [ScriptedModel, ObservedModel, sdk._RoutingModel, Replay],
                         ids=lambda cls: cls.__name__)
def test_models_take_the_sdks_positional_parameters_and_any_keywords(model: type[sdk.Model]) -> None:
    expected = [p.name for p in inspect.signature(sdk.Model.get_response).parameters.values()
                if p.kind is POSITIONAL]
    ours = inspect.signature(model.get_response).parameters.values()
    assert [p.name for p in ours if p.kind is POSITIONAL] == expected
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ours)


@pytest.mark.anyio
async def test_the_observed_model_passes_on_keywords_it_does_not_know() -> None:
    inner = Replay(_say("hello"))
    state = EpisodeState(spec=plan_episodes(domain="mock", limit=1)[0], trajectory=Trajectory(),
                         events=EventLog("run", [MemorySink()]))
    observed = ObservedModel(inner, state, anyio.CapacityLimiter(1), "m")
    keywords = {"previous_response_id": None, "conversation_id": None, "prompt": None, "from_a_newer_sdk": 7}
    await observed.get_response(None, [], sdk.ModelSettings(), [], None, [], None, **keywords)
    assert inner.kwargs == [keywords]
    assert state.turns == 1 and state.model_calls == 1


def _loop(model: sdk.Model, answer: sdk.ToolAnswer, *, stop_at_tool: str | None = None) -> sdk.AgentLoop:
    lookup = sdk.function_tool("lookup", "Looks a thing up.", {"type": "object", "properties": {}}, answer)
    return sdk.AgentLoop(name="t", instructions="be brief", tools=[lookup], model=model,
                         settings=sdk.ModelSettings(), stop_at_tool=stop_at_tool, answer_unknown_tool=answer)


@pytest.mark.anyio
async def test_made_up_tool_names_are_answered_like_every_tool_call() -> None:
    calls: list[tuple[Any, str, str, str]] = []

    async def answer(context: Any, call_id: str, name: str, raw_arguments: str) -> str:
        calls.append((context, call_id, name, raw_arguments))
        return f"answer to {name}"

    model = Replay(_call("frobnicate", {"x": 1}, 1), _call("lookup", {}, 2), _say("done"))
    result = await _loop(model, answer).run([{"role": "user", "content": "hi"}], context="ctx", max_turns=5)
    assert result.final_output == "done"
    assert calls == [("ctx", "call_1", "frobnicate", '{"x": 1}'), ("ctx", "call_2", "lookup", "{}")]
    outputs = [item for item in model.inputs[1] if item.get("type") == "function_call_output"]
    assert [(o["call_id"], o["output"]) for o in outputs] == [("call_1", "answer to frobnicate")]


@pytest.mark.anyio
async def test_a_failing_answer_to_a_made_up_tool_ends_the_run_with_its_error() -> None:
    async def answer(context: Any, call_id: str, name: str, raw_arguments: str) -> str:
        raise EnvError(f"environment gone while answering {name}")

    model = Replay(_call("frobnicate", {}, 1), _say("never sent"))
    with pytest.raises(Exception) as raised:
        await _loop(model, answer).run([{"role": "user", "content": "hi"}], context=None, max_turns=5)
    error: BaseException | None = raised.value
    while error is not None and not isinstance(error, EnvError):
        error = error.__cause__
    assert isinstance(error, EnvError) and "frobnicate" in str(error)
    assert len(model.inputs) == 1  # the model was not asked again after the failure


def test_an_sdk_that_cannot_build_its_usage_is_named_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_usage() -> None:
        raise ValueError("1 validation error for InputTokensDetails\ncache_write_tokens\n  Field required")

    monkeypatch.setattr(sdk, "Usage", broken_usage)
    with pytest.raises(ImportError, match=r"openai-agents \S+ does not work with openai \S+ .*'openai<2.45'"):
        sdk._require_working_usage()
