"""The oracle policy: replays a task's gold actions, then ends the episode as tau2 expects.

Solo mode: gold actions, then the `done` tool. With a user: gold actions (asking the user
to perform user-side ones), then one message carrying the task's `communicate_info`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.policies.scripted import SayStep, Script, ScriptedModel, Step, ToolStep, steps_from_actions

if TYPE_CHECKING:
    from tau2.data_model.tasks import Task

DONE_TOOL = "done"


def closing_message(communicate_info: list[str] | None) -> str:
    if communicate_info:
        return "Here is what you asked for: " + "; ".join(communicate_info) + ". Anything else?"
    return "Your request has been taken care of. Anything else I can help with?"


def final_step(task: Task, *, solo_mode: bool) -> Step:
    if solo_mode:
        return ToolStep(DONE_TOOL, {})
    criteria = task.evaluation_criteria
    return SayStep(closing_message(criteria.communicate_info if criteria else None))


def oracle_script(task: Task, *, solo_mode: bool) -> Script:
    actions = task.evaluation_criteria.actions if task.evaluation_criteria else None
    steps = steps_from_actions(actions or [], solo_mode=solo_mode)
    final = final_step(task, solo_mode=solo_mode)
    return Script(steps=[*steps, final], final=final)


def oracle_model(task: Task, *, solo_mode: bool, latency_s: float = 0.0) -> ScriptedModel:
    return ScriptedModel(oracle_script(task, solo_mode=solo_mode), latency_s=latency_s)
