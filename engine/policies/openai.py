"""The `openai` policy: the Agents SDK's chat-completions model (as the original example
sets with `set_default_openai_api("chat_completions")`) on an OpenAI-compatible endpoint
(AReaL proxy, vLLM, SGLang, OpenAI), through the engine's pooled clients."""

from __future__ import annotations

from agents import Model, OpenAIChatCompletionsModel

from engine.clients import LoopPools, http_client_override
from engine.config import EpisodeSpec, require_endpoint


class OpenAIPolicy:
    """Builds `openai` policy models on connection pools sized to the model-call limiter."""

    def __init__(self, max_connections: int = 256) -> None:
        self.pools = LoopPools(max_connections)

    def model(self, spec: EpisodeSpec) -> Model:
        endpoint = require_endpoint(spec.policy)
        client = self.pools.pool().client(endpoint, http_client_override())
        return OpenAIChatCompletionsModel(model=endpoint.model, openai_client=client)
