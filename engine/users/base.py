"""The user-simulator protocol the environment backends host."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tau2.data_model.message import Message, ToolCall, ToolMessage

ToolRunner = Callable[["ToolCall"], "ToolMessage"]
"""Executes a user-side tool call on the episode's environment."""


class UserSimulator(Protocol):
    async def reply(self, agent_text: str) -> list[Message]:
        """The user's answer to the agent's message: zero or more user tool calls, each
        followed by its tool message, then one user text message (possibly a stop)."""
        ...


def is_stop(text: str | None) -> bool:
    """tau2's user stop tokens (###STOP###, ###TRANSFER###, ###OUT-OF-SCOPE###)."""
    from tau2.user.base import OUT_OF_SCOPE, STOP, TRANSFER

    return text is not None and any(token in text for token in (STOP, TRANSFER, OUT_OF_SCOPE))


def call_metrics(message: Message) -> tuple[float, dict[str, int] | None, str | None]:
    """(latency_s, usage, model) of the model call that produced a user message.

    An LLM user puts them in the tau2 message: `usage` in the events' form and
    `raw_data = {"latency_s": ..., "model": ...}`; scripted users leave both empty.
    """
    raw = getattr(message, "raw_data", None) or {}
    latency = raw.get("latency_s")
    model = raw.get("model")
    return (
        float(latency) if isinstance(latency, int | float) else 0.0,
        getattr(message, "usage", None),
        model if isinstance(model, str) else None,
    )
