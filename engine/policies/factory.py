"""Builds the policy model of an episode from its spec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents import Model

from engine.config import OFFLINE_POLICIES, EpisodeSpec
from engine.errors import ConfigError
from engine.policies.noisy import noisy_oracle_model
from engine.policies.oracle import oracle_model

if TYPE_CHECKING:
    from tau2.data_model.tasks import Task


def make_model(spec: EpisodeSpec, task: Task) -> Model:
    policy = spec.policy
    latency_s = policy.latency_ms / 1000.0
    if policy.name == "oracle":
        return oracle_model(task, solo_mode=spec.solo_mode, latency_s=latency_s)
    if policy.name == "noisy-oracle":
        return noisy_oracle_model(
            task,
            solo_mode=spec.solo_mode,
            noise=policy.noise,
            seed=spec.seed,
            domain=spec.domain,
            sample=spec.sample,
            latency_s=latency_s,
        )
    raise ConfigError.choice("policy", policy.name, OFFLINE_POLICIES)
