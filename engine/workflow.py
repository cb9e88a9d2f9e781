"""`Tau2Workflow`: the AReaL agent-workflow contract around one episode.

AReaL calls `await workflow.run(data, **extra_kwargs)` and needs a Python float back:

- inline mode passes `base_url`, `api_key` (the session's key) and `http_client` (an
  `httpx.AsyncClient`) for its OpenAI-compatible proxy;
- subprocess mode runs `asyncio.run(Tau2Workflow().run(data))` with `OPENAI_BASE_URL` and
  `OPENAI_API_KEY` set.

The episode runs on the reward hook's engine (one per event loop), with the `openai`
policy on that endpoint unless `data["policy"]` names another. Episodes that end
`infra_error`, `timeout` or `cancelled` raise EpisodeDiscarded so AReaL drops the
trajectory, unless the workflow was built with `discard_failures=False` (then 0.0).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from engine.clients import using_http_client
from engine.config import (
    OFFLINE_POLICIES,
    Endpoint,
    PolicyConfig,
    Sampling,
    check_float,
    model_name,
    request_options,
    sampling_from,
)
from engine.errors import ConfigError, EpisodeDiscarded
from engine.hooks import run_episode_from_data
from engine.results import DISCARDED


class Tau2Workflow:
    """AReaL workflow: `await Tau2Workflow().run(data, **extra_kwargs) -> float`."""

    def __init__(
        self,
        *,
        model: str | None = None,
        gconfig: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        discard_failures: bool = True,
        request_timeout: float | None = None,
        max_retries: int | None = None,
    ) -> None:
        """`model`: model name sent to the endpoint (default OPENAI_MODEL or "default");
        `gconfig`: sampling defaults (`temperature`, `top_p`, `max_tokens`, `seed`) that
        `data["gconfig"]` overrides; `timeout`: episode deadline in seconds when `data`
        has none; `discard_failures`: raise EpisodeDiscarded (True) or return 0.0 for
        infra_error, timeout and cancelled episodes; `request_timeout` (s) and
        `max_retries`: one model request's deadline and retry budget (default
        TAU2_ENGINE_REQUEST_TIMEOUT / TAU2_ENGINE_MAX_RETRIES, else 600 s and 5)."""
        self.model = model
        self.sampling = sampling_from(gconfig, Sampling())
        self.timeout = None if timeout is None else check_float("timeout", timeout, minimum=0, strict=True)
        self.discard_failures = discard_failures
        self.request_options = request_options(timeout_s=request_timeout, max_retries=max_retries)

    def endpoint(self, extra_kwargs: Mapping[str, Any]) -> Endpoint | None:
        """The model endpoint: AReaL's `base_url` / `api_key`, else the environment."""
        base_url = extra_kwargs.get("base_url") or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            return None
        api_key = extra_kwargs.get("api_key") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        model = self.model or os.environ.get("OPENAI_MODEL") or "default"
        return Endpoint(base_url=str(base_url), api_key=str(api_key), model=model_name(model),
                        **self.request_options)

    async def run(self, data: dict[str, Any], **extra_kwargs: Any) -> float:
        """Run the episode `data` describes; return tau2's reward as a float."""
        endpoint = self.endpoint(extra_kwargs)
        offline = isinstance(data, Mapping) and data.get("policy") in OFFLINE_POLICIES
        if endpoint is None and not offline:
            raise ConfigError(
                "Tau2Workflow needs a model endpoint: pass base_url= (AReaL inline mode) "
                "or set OPENAI_BASE_URL (subprocess mode)"
            )
        policy = PolicyConfig(name="openai", endpoint=endpoint, sampling=self.sampling)
        if self.timeout is not None and isinstance(data, Mapping) and "timeout" not in data:
            data = {**data, "timeout": self.timeout}
        with using_http_client(extra_kwargs.get("http_client")):
            result = await run_episode_from_data(data, policy=policy)
        if result.status in DISCARDED and self.discard_failures:
            raise EpisodeDiscarded(result)
        return float(result.reward)
