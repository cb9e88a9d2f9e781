"""Trajectories for scoring tests: a task's gold actions replayed as an agent (and user)
would, and perturbed versions of them (an action dropped, an argument changed)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.envs import tau2_cache
from engine.policies.oracle import closing_message

if TYPE_CHECKING:
    from tau2.data_model.message import Message
    from tau2.data_model.tasks import Action, Task

STOP = "###STOP###"


@dataclass(frozen=True)
class Case:
    domain: str
    task: Task
    solo_mode: bool
    variant: str
    messages: list[Message]
    termination: str = "agent_stop"

    @property
    def id(self) -> str:
        return f"{self.domain}-{self.task.id}-{self.variant}"


def replay(domain: str, task: Task, actions: Sequence[Action], *, solo_mode: bool) -> list[Message]:
    """The messages of an episode that performs `actions` and then stops."""
    from tau2.data_model.message import AssistantMessage, ToolCall, UserMessage

    state = task.initial_state
    history = [m.model_copy(deep=True) for m in (state.message_history or [])] if state else []
    env = tau2_cache.new_environment(domain, solo_mode=solo_mode)
    env.set_state(
        initialization_data=state.initialization_data if state else None,
        initialization_actions=state.initialization_actions if state else None,
        message_history=history,
    )
    messages: list[Message] = list(history)
    for i, action in enumerate(actions):
        by_user = action.requestor == "user" and not solo_mode
        call = ToolCall(
            id=f"call_{i}",
            name=action.name,
            arguments=dict(action.arguments),
            requestor="user" if by_user else "assistant",
        )
        if by_user:
            messages.append(UserMessage(role="user", content=None, tool_calls=[call]))
        else:
            messages.append(AssistantMessage(role="assistant", content=None, tool_calls=[call]))
        messages.append(env.get_response(call))
    if solo_mode:
        messages.append(AssistantMessage(role="assistant", content=STOP))
    else:
        criteria = task.evaluation_criteria
        info = criteria.communicate_info if criteria else None
        messages.append(AssistantMessage(role="assistant", content=closing_message(info)))
        messages.append(UserMessage(role="user", content=STOP))
    return messages


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + ("0" if value[-1:] != "0" else "1") if value else "x"
    if isinstance(value, list) and value:
        return value[:-1]
    return None


def change_argument(actions: Sequence[Action]) -> list[Action] | None:
    """The actions with one argument of the last action that has arguments changed."""
    for index in range(len(actions) - 1, -1, -1):
        action = actions[index]
        for name, value in action.arguments.items():
            changed = _changed(value)
            if changed is not None and changed != value:
                copy = action.model_copy(deep=True)
                copy.arguments[name] = changed
                return [*actions[:index], copy, *actions[index + 1 :]]
    return None


def cases(domain: str, task: Task, *, solo_mode: bool, perturb: bool = True) -> Iterator[Case]:
    actions = list(task.evaluation_criteria.actions or []) if task.evaluation_criteria else []
    yield Case(domain, task, solo_mode, "gold", replay(domain, task, actions, solo_mode=solo_mode))
    if not perturb:
        return
    if actions:
        dropped = actions[:-1]
        yield Case(domain, task, solo_mode, "drop-last",
                   replay(domain, task, dropped, solo_mode=solo_mode))
    changed = change_argument(actions)
    if changed is not None:
        yield Case(domain, task, solo_mode, "change-arg",
                   replay(domain, task, changed, solo_mode=solo_mode))
