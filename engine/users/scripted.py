"""A scripted user: states the reason for the call, performs the task's user-side gold
actions when the agent asks, and stops with tau2's stop token once the agent is done."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from engine.users.base import ToolRunner

if TYPE_CHECKING:
    from tau2.data_model.message import Message
    from tau2.data_model.tasks import Task

_ids = itertools.count()


def opening_line(task: Task) -> str:
    instructions = task.user_scenario.instructions
    reason = getattr(instructions, "reason_for_call", None)
    text = reason if isinstance(reason, str) else str(instructions)
    return text.strip() or "Hello, I need some help."


class ScriptedUser:
    """Deterministic user for offline non-solo episodes."""

    def __init__(self, task: Task, run_tool: ToolRunner) -> None:
        criteria = task.evaluation_criteria
        actions = (criteria.actions or []) if criteria else []
        self._pending = [a for a in actions if a.requestor == "user"]
        self._run_tool = run_tool
        self._task = task
        self._opened = False

    async def reply(self, agent_text: str) -> list[Message]:
        from tau2.data_model.message import ToolCall, UserMessage
        from tau2.user.base import STOP

        if not self._opened:
            self._opened = True
            return [UserMessage(role="user", content=opening_line(self._task))]
        if not self._pending:
            return [UserMessage(role="user", content=STOP)]
        action = self._pending.pop(0)
        call = ToolCall(
            id=f"user_call_{next(_ids)}",
            name=action.name,
            arguments=dict(action.arguments),
            requestor="user",
        )
        request = UserMessage(role="user", content=None, tool_calls=[call])
        result = self._run_tool(call)
        return [request, result, UserMessage(role="user", content=f"Done: {action.name}.")]
