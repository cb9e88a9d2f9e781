"""The noisy-oracle policy: the oracle with seeded mistakes, so rewards spread over [0, 1].

Each gold action is independently kept, dropped or perturbed (one argument changed); the
closing message loses its `communicate_info` with the same probability. The choices are a
pure function of (seed, domain, task, sample), so a run is reproducible.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING, Any

from engine.policies.oracle import closing_message, final_step
from engine.policies.scripted import SayStep, Script, ScriptedModel, Step, ToolStep, steps_from_actions

if TYPE_CHECKING:
    from tau2.data_model.tasks import Task


def episode_rng(seed: int, domain: str, task_id: str, sample: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}|{domain}|{task_id}|{sample}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def perturb(arguments: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    if not arguments:
        return arguments
    out = dict(arguments)
    key = rng.choice(sorted(out))
    value = out[key]
    if isinstance(value, bool):
        out[key] = not value
    elif isinstance(value, int | float):
        out[key] = value + 1
    elif isinstance(value, str):
        out[key] = value + "_x"
    else:
        out[key] = None
    return out


def noisy_script(task: Task, *, solo_mode: bool, noise: float, rng: random.Random) -> Script:
    actions = task.evaluation_criteria.actions if task.evaluation_criteria else None
    steps: list[Step] = []
    for step in steps_from_actions(actions or [], solo_mode=solo_mode):
        roll = rng.random()
        if roll < noise / 2:
            continue
        if roll < noise and isinstance(step, ToolStep):
            step = ToolStep(step.name, perturb(step.arguments, rng))
        steps.append(step)
    final = final_step(task, solo_mode=solo_mode)
    if isinstance(final, SayStep) and rng.random() < noise:
        final = SayStep(closing_message(None))
    return Script(steps=[*steps, final], final=final)


def noisy_oracle_model(
    task: Task, *, solo_mode: bool, noise: float, seed: int, domain: str, sample: int, latency_s: float = 0.0
) -> ScriptedModel:
    rng = episode_rng(seed, domain, task.id, sample)
    script = noisy_script(task, solo_mode=solo_mode, noise=noise, rng=rng)
    return ScriptedModel(script, latency_s=latency_s, name="noisy-oracle")
