"""tau2's own user simulator (`tau2.user.user_simulator.UserSimulator`, litellm), for a
user model given as a litellm model string without an endpoint, as AEnvironment's tau2
env runs it (`TAU2_USER_LLM` without `TAU2_USER_LLM_API_BASE`).

litellm finds the provider's API base and key itself (e.g. OPENAI_API_KEY and
OPENAI_BASE_URL for `openai/...`). Its calls block, so they run in a worker thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from engine.errors import ModelError
from engine.users.base import ToolRunner
from engine.users.llm import MAX_TOOL_ROUNDS, USER_TEMPERATURE

if TYPE_CHECKING:
    from tau2.data_model.message import Message
    from tau2.data_model.tasks import Task


class Tau2User:
    """tau2's UserSimulator on a litellm model string."""

    def __init__(self, model: str, task: Task, run_tool: ToolRunner, *,
                 tools: Sequence[Mapping[str, Any]] | None) -> None:
        from tau2.user.base import is_valid_user_history_message
        from tau2.user.user_simulator import UserSimulator

        self.model = model
        self._run_tool = run_tool
        self._simulator = UserSimulator(tools=_as_tau2_tools(tools), instructions=task.user_scenario,
                                        llm=model, llm_args={"temperature": USER_TEMPERATURE})
        state = task.initial_state
        past = (state.message_history or []) if state else []
        self._state = self._simulator.get_init_state(
            [m.model_copy(deep=True) for m in past if is_valid_user_history_message(m)])

    async def reply(self, agent_text: str) -> list[Message]:
        from tau2.data_model.message import AssistantMessage, MultiToolMessage

        incoming: Any = AssistantMessage(role="assistant", content=agent_text)
        out: list[Message] = []
        for _ in range(MAX_TOOL_ROUNDS):
            try:
                message, self._state = await anyio.to_thread.run_sync(
                    self._simulator.generate_next_message, incoming, self._state)
            except Exception as exc:
                raise ModelError(f"user simulator {self.model!r} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
            out.append(message)
            if not message.tool_calls:
                return out
            results = [self._run_tool(call) for call in message.tool_calls]
            out.extend(results)
            incoming = (results[0] if len(results) == 1
                        else MultiToolMessage(role="tool", tool_messages=results))
        raise ModelError(f"user simulator made {MAX_TOOL_ROUNDS} rounds of tool calls without answering")


class _SchemaTool:
    """What tau2's `generate` reads of a tool: its OpenAI schema."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.openai_schema = dict(schema)


def _as_tau2_tools(tools: Sequence[Mapping[str, Any]] | None) -> Any:
    return [_SchemaTool(t) for t in tools] if tools else None
