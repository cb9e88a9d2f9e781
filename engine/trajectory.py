"""The episode's tau2 trajectory, and its reconstruction from events.

The same functions build messages during the episode and from the events afterwards,
so a trajectory rebuilt from a JSONL file is the one that was scored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tau2.data_model.message import AssistantMessage, Message, ToolCall, ToolMessage, UserMessage

STOP_TOKEN = "###STOP###"
DONE_TOOL = "done"


MALFORMED_ARGUMENTS = "malformed_json_arguments"


def parse_arguments(raw: str) -> dict[str, Any]:
    """Tool arguments as tau2 records them: the JSON object the model sent. Arguments that
    are not a JSON object are recorded as {MALFORMED_ARGUMENTS: raw}: the environment
    answers that call with an error tool message (no tool takes that argument), the same
    one again when tau2 replays the trajectory to score it."""
    try:
        parsed = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError:
        return {MALFORMED_ARGUMENTS: raw}
    return parsed if isinstance(parsed, dict) else {MALFORMED_ARGUMENTS: raw}


def tool_call(call_id: str, name: str, arguments: Mapping[str, Any], requestor: str) -> ToolCall:
    from tau2.data_model.message import ToolCall

    return ToolCall(id=call_id, name=name, arguments=dict(arguments), requestor=requestor)


def assistant_message(
    content: str | None, calls: Sequence[Mapping[str, Any]], *, solo_mode: bool
) -> AssistantMessage:
    """tau2's assistant message. A solo agent calling `done` becomes the stop message with
    no tool calls, as tau2's LLMSoloAgent records it."""
    from tau2.data_model.message import AssistantMessage

    if solo_mode and any(c["name"] == DONE_TOOL for c in calls):
        return AssistantMessage(role="assistant", content=STOP_TOKEN, tool_calls=None)
    tool_calls = [tool_call(c["id"], c["name"], c["arguments"], "assistant") for c in calls]
    return AssistantMessage(role="assistant", content=content, tool_calls=tool_calls or None)


def user_message(content: str | None, calls: Sequence[Mapping[str, Any]]) -> UserMessage:
    from tau2.data_model.message import UserMessage

    tool_calls = [tool_call(c["id"], c["name"], c["arguments"], "user") for c in calls]
    return UserMessage(role="user", content=content, tool_calls=tool_calls or None)


def tool_message(call_id: str, content: str, requestor: str, error: bool) -> ToolMessage:
    from tau2.data_model.message import ToolMessage

    return ToolMessage(id=call_id, role="tool", content=content, requestor=requestor, error=error)


def calls_of(message: Message) -> list[dict[str, Any]]:
    calls = getattr(message, "tool_calls", None) or []
    return [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


class Trajectory:
    """Messages in conversation order, indexed as tau2 numbers them (turn_idx)."""

    def __init__(self, history: Iterable[Message] = ()) -> None:
        self.messages: list[Message] = []
        self.history_length = 0
        for message in history:
            self.add(message.model_copy(deep=True))
        self.history_length = len(self.messages)

    def add(self, message: Message) -> int:
        message.turn_idx = len(self.messages)
        message.timestamp = now()
        self.messages.append(message)
        return message.turn_idx

    def __len__(self) -> int:
        return len(self.messages)


def messages_from_events(events: Iterable[Mapping[str, Any]], *, solo_mode: bool) -> list[Message]:
    """Rebuild one episode's trajectory from its `turn` and `tool_call` events."""
    records = sorted((e for e in events if e["event"] in ("turn", "tool_call")), key=lambda e: e["turn"])
    out: list[Message] = []
    for e in records:
        if e["event"] == "tool_call":
            out.append(tool_message(e["call_id"], e["result"], e["requestor"], e["error"]))
        elif e["role"] == "assistant":
            out.append(assistant_message(e["content"], e["tool_calls"], solo_mode=False))
        else:
            out.append(user_message(e["content"], e["tool_calls"]))
    for i, message in enumerate(out):
        message.turn_idx = i
    return out


def rescore(
    events: Sequence[Mapping[str, Any]],
    *,
    domain: str,
    task_id: str,
    solo_mode: bool,
    split: str | None = None,
) -> float:
    """Score an episode from its events alone with stock tau2 `evaluate_simulation`."""
    from engine import catalog, tau2lib

    tau2lib.load()
    from tau2.data_model.simulation import SimulationRun
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

    reward_event = next(e for e in events if e["event"] == "reward")
    messages = messages_from_events(events, solo_mode=solo_mode)
    simulation = SimulationRun(
        id="rescore",
        task_id=task_id,
        start_time=now(),
        end_time=now(),
        duration=0.0,
        termination_reason=reward_event["termination_reason"],
        messages=messages,
    )
    task = catalog.get_task(domain, task_id, split)
    info = evaluate_simulation(simulation, task, EvaluationType.ALL, solo_mode, domain)
    return float(info.reward)
