"""Stock tau2's own runner (`tau2 run`'s code path) driven by a scripted model.

`tau2.run.run_tasks` is what `tau2 run` calls: a `ThreadPoolExecutor` of
`max_concurrency` threads, each running `run_task` (the registry's environment
constructor, the agent and user constructors, tau2's `Orchestrator`, stock
`evaluate_simulation`). Only the LLM is replaced: the agents below subclass tau2's own
`LLMSoloAgent` / `LLMAgent` and `UserSimulator` and override just the method that would
call the model, playing the same script as the engine's oracle policy (gold actions, then
`done` in solo mode, or a closing message the scripted user answers with the stop token),
after the same simulated latency (a blocking sleep, as a blocking HTTP call would be).
"""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterator
from typing import Any

from tau2 import run as tau2_run
from tau2.agent.llm_agent import LLMAgent, LLMAgentState, LLMSoloAgent
from tau2.data_model.message import (
    AssistantMessage,
    MultiToolMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
)
from tau2.data_model.tasks import Task
from tau2.evaluator.evaluator import EvaluationType
from tau2.registry import registry
from tau2.user.base import STOP
from tau2.user.user_simulator import UserSimulator, UserState

from engine.policies.oracle import closing_message
from engine.users.scripted import opening_line

SOLO_AGENT = "bench_scripted_solo_agent"
AGENT = "bench_scripted_agent"
USER = "bench_scripted_user"

_latency_s = 0.0


def _simulated_call() -> None:
    if _latency_s > 0:
        time.sleep(_latency_s)


def _gold(task: Task) -> list[Any]:
    criteria = task.evaluation_criteria
    return list((criteria.actions or []) if criteria else [])


def _append_input(state: LLMAgentState, message: Any) -> None:
    if isinstance(message, MultiToolMessage):
        state.messages.extend(message.tool_messages)
    elif message is not None:
        state.messages.append(message)


class ScriptedSoloAgent(LLMSoloAgent):
    """tau2's solo agent; the model is a script: every gold action, then `done`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._steps = _gold(self.task)
        self._played = 0

    def generate_next_message(
        self, message: Any, state: LLMAgentState
    ) -> tuple[AssistantMessage, LLMAgentState]:
        _append_input(state, message)
        _simulated_call()
        n = self._played
        self._played += 1
        if n < len(self._steps):
            action = self._steps[n]
            call = ToolCall(id=f"call_{n}", name=action.name, arguments=dict(action.arguments))
        else:
            call = ToolCall(id=f"call_{n}", name=self.STOP_FUNCTION_NAME, arguments={})
        reply = AssistantMessage(role="assistant", content=None, tool_calls=[call])
        reply = self._check_if_stop_toolcall(reply)
        state.messages.append(reply)
        return reply, state

    def set_seed(self, seed: int) -> None:
        return None


_episode = threading.local()
"""The task of the `run_task` call on this pool thread (run_task hands it to neither the
agent nor the user constructor when there is a user)."""


@contextlib.contextmanager
def _tasks_bound_to_threads() -> Iterator[None]:
    stock = tau2_run.run_task

    def run_task(*, task: Task, **kwargs: Any) -> Any:
        _episode.task = task
        return stock(task=task, **kwargs)

    tau2_run.run_task = run_task
    try:
        yield
    finally:
        tau2_run.run_task = stock


class ScriptedAgent(LLMAgent):
    """tau2's agent with a user; the model is a script: gold agent actions as tool calls,
    a request for each user action, then a closing message (the task's communicate_info)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task: Task = _episode.task

    def generate_next_message(
        self, message: Any, state: LLMAgentState
    ) -> tuple[AssistantMessage, LLMAgentState]:
        _append_input(state, message)
        _simulated_call()
        steps = _gold(self.task)
        n = sum(1 for m in state.messages if isinstance(m, AssistantMessage))
        if n < len(steps):
            action = steps[n]
            if action.requestor == "assistant":
                call = ToolCall(id=f"call_{n}", name=action.name, arguments=dict(action.arguments))
                reply = AssistantMessage(role="assistant", content=None, tool_calls=[call])
            else:
                text = f"Please do the following on your side: {action.get_func_format()}"
                reply = AssistantMessage(role="assistant", content=text)
        else:
            criteria = self.task.evaluation_criteria
            reply = AssistantMessage(
                role="assistant", content=closing_message(criteria.communicate_info if criteria else None)
            )
        state.messages.append(reply)
        return reply, state

    def set_seed(self, seed: int) -> None:
        return None


class ScriptedUser(UserSimulator):
    """tau2's user simulator; the model is a script: the reason for the call, each of the
    task's user-side gold actions when asked, then the stop token."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.task: Task = _episode.task

    def generate_next_message(self, message: Any, state: UserState) -> tuple[UserMessage, UserState]:
        state.messages.append(message)
        _simulated_call()
        pending = [a for a in _gold(self.task) if a.requestor == "user"]
        done = sum(1 for m in state.messages if isinstance(m, ToolMessage))
        opened = any(isinstance(m, UserMessage) for m in state.messages)
        if not opened:
            reply = UserMessage(role="user", content=opening_line(self.task))
        elif isinstance(message, ToolMessage | MultiToolMessage):
            reply = UserMessage(role="user", content="Done.")
        elif done < len(pending):
            action = pending[done]
            call = ToolCall(id=f"user_call_{done}", name=action.name, arguments=dict(action.arguments),
                            requestor="user")
            reply = UserMessage(role="user", content=None, tool_calls=[call])
        else:
            reply = UserMessage(role="user", content=STOP)
        state.messages.append(reply)
        return reply, state

    def set_seed(self, seed: int) -> None:
        return None


def _register() -> None:
    if SOLO_AGENT not in registry.get_agents():
        registry.register_agent(ScriptedSoloAgent, SOLO_AGENT)
        registry.register_agent(ScriptedAgent, AGENT)
        registry.register_user(ScriptedUser, USER)


def run_stock(domain: str, tasks: list[Task], *, solo_mode: bool, trials: int, concurrency: int,
              latency_s: float) -> tuple[float, list[float]]:
    """`tau2.run.run_tasks` over `tasks` x `trials`; returns (wall seconds, rewards)."""
    global _latency_s
    _register()
    _latency_s = latency_s
    agent, user = (SOLO_AGENT, "dummy_user") if solo_mode else (AGENT, USER)
    started = time.perf_counter()
    with _tasks_bound_to_threads(), contextlib.redirect_stdout(io.StringIO()):  # a line per task
        results = tau2_run.run_tasks(
            domain=domain,
            tasks=tasks,
            agent=agent,
            user=user,
            llm_agent="scripted",
            llm_args_agent={},
            llm_user="scripted",
            llm_args_user={},
            num_trials=trials,
            max_steps=200,
            save_to=None,
            console_display=False,
            evaluation_type=EvaluationType.ALL,
            max_concurrency=concurrency,
            log_level="ERROR",
        )
    wall = time.perf_counter() - started
    return wall, [s.reward_info.reward if s.reward_info else 0.0 for s in results.simulations]
