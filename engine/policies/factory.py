"""Builds the policy model of an episode from its spec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.clients import ClientPool
from engine.config import POLICIES, EpisodeSpec
from engine.errors import ConfigError
from engine.policies.noisy import noisy_oracle_model
from engine.policies.openai import OpenAIPolicy
from engine.policies.oracle import oracle_model
from engine.sdk import Model

if TYPE_CHECKING:
    from tau2.data_model.tasks import Task


class ModelFactory:
    """The engine's model factory: `factory(spec, task) -> Model`. It owns the openai
    policy's connection pool, sized to the engine's model-call limiter (closed by
    `aclose`)."""

    def __init__(self, model_slots: int = 256) -> None:
        self.clients = ClientPool(model_slots)
        self.openai = OpenAIPolicy(self.clients)

    async def aclose(self) -> None:
        await self.clients.aclose()

    def __call__(self, spec: EpisodeSpec, task: Task) -> Model:
        if spec.policy.name == "openai":
            return self.openai.model(spec)
        return make_model(spec, task)


def make_model(spec: EpisodeSpec, task: Task) -> Model:
    """An offline policy's model (oracle, noisy-oracle); the openai policy's models come
    from a ModelFactory, which owns their connections."""
    policy = spec.policy
    if policy.name == "openai":
        raise ConfigError(
            "the openai policy's models come from an engine's ModelFactory (it owns their connections)"
        )
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
    raise ConfigError.choice("policy", policy.name, POLICIES)
