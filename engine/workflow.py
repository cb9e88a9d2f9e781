"""`Tau2Workflow`: the AReaL agent-workflow contract around one episode.

AReaL (1.0.4) builds it from `trainer.train(workflow="engine.Tau2Workflow",
workflow_kwargs={...})` with the kwargs of its tau2 example (`econfig=asdict(Tau2EnvConfig)`,
`gen_args`, `timeout`, optionally `gconfig=asdict(GenerationHyperparameters)`), and calls
`await workflow.run(data, **extra_kwargs)` for a Python float:

- inline mode passes `base_url`, `api_key` (the session's key) and `http_client` (an
  `httpx.AsyncClient`) for its OpenAI-compatible proxy;
- subprocess mode pickles the workflow into a process pool and runs
  `asyncio.run(workflow.run(data))` there with `OPENAI_BASE_URL` / `OPENAI_API_KEY` set.

A row is `{"task_id", "split"}` (split default `train`); the domain and the rest come from
`econfig`, and `data["econfig"]` / `data["gconfig"]` override per row. AReaL rejects a
whole `n_samples` group when one member raises, so the policy's own failures (context
overflow, malformed output, step budget) return reward 0.0 and only `raise_on` statuses
(default infra_error, timeout, cancelled) raise EpisodeDiscarded. Calls to the recording
proxy are not retried by default (a retried request stays in AReaL's session and would be
trained on) and wait up to AReaL's own request timeout.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import anyio

from engine import catalog
from engine.areal_config import AREAL_DEFAULT_SPLIT, EnvSettings, env_settings, user_config
from engine.clients import using_http_client
from engine.config import (
    OFFLINE_POLICIES,
    Endpoint,
    EpisodeSpec,
    PolicyConfig,
    Sampling,
    UserConfig,
    check_float,
    model_name,
    report_unused,
    request_options,
    sampling_from,
    spec_from_data,
)
from engine.errors import ConfigError, EpisodeDiscarded
from engine.hooks import backend_from_env, concurrency_from_env, hook_engine, run_spec
from engine.results import DISCARDED, Status

AREAL_REQUEST_TIMEOUT_S = 3600.0
"""AReaL's own HTTP request timeout (areal.infra.utils.http.DEFAULT_REQUEST_TIMEOUT)."""

ROW_FIELDS: tuple[str, ...] = (
    "domain", "max_steps", "policy", "sample", "seed", "solo_mode", "split", "task_id", "timeout",
)
"""Row keys that go to the episode as they are (besides `econfig` and `gconfig`)."""

_log = logging.getLogger("engine.workflow")
_warned_scripted_user = False


class Tau2Workflow:
    """AReaL workflow: `await Tau2Workflow(**workflow_kwargs).run(data, **extra_kwargs) -> float`."""

    def __init__(
        self,
        econfig: Mapping[str, Any] | None = None,
        gen_args: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        *,
        gconfig: Mapping[str, Any] | None = None,
        model: str | None = None,
        split: str = AREAL_DEFAULT_SPLIT,
        raise_on: Iterable[str] | None = None,
        discard_failures: bool = True,
        request_timeout: float | None = None,
        max_retries: int | None = None,
        user: str | None = None,
        backend: str | None = None,
        concurrency: int | None = None,
        **unused_kwargs: Any,
    ) -> None:
        """AReaL's kwargs: `econfig` (Tau2EnvConfig as a dict), `gen_args` (request arguments:
        temperature, top_p, max_completion_tokens, extra_body, ...), `timeout` (episode
        deadline, seconds), `gconfig` (GenerationHyperparameters as a dict; `max_new_tokens`
        per call, `max_tokens` prompt-plus-completion budget). `gen_args` override `gconfig`.

        The engine's own: `model` (name sent to the endpoint; default OPENAI_MODEL or
        "default"), `split` (of rows without one), `raise_on` (statuses that raise
        EpisodeDiscarded; default infra_error, timeout, cancelled; `discard_failures=False`
        is `raise_on=()`), `request_timeout` / `max_retries` (of each model request; default
        TAU2_ENGINE_REQUEST_TIMEOUT / TAU2_ENGINE_MAX_RETRIES, else 3600 s and no retries),
        `user="scripted"` (run non-solo episodes against the scripted user instead of
        requiring an LLM user; said loudly), `backend` (default TAU2_ENGINE_BACKEND or local),
        `concurrency` (episodes in flight per event loop; default TAU2_ENGINE_CONCURRENCY
        or 2048). Unknown kwargs and unused fields are reported once, never an error."""
        unused: dict[str, set[str]] = {"workflow_kwargs": set(unused_kwargs), "econfig": set(),
                                       "gconfig": set(), "gen_args": set()}
        self.env = env_settings(econfig, EnvSettings(), unused=unused["econfig"])
        sampling = sampling_from(gconfig, Sampling(), unused=unused["gconfig"])
        self.sampling = sampling_from(gen_args, sampling, unused=unused["gen_args"])
        self.timeout = None if timeout is None else check_float("timeout", timeout, minimum=0, strict=True)
        self.model = model
        if not isinstance(split, str):
            raise ConfigError(f"split must be a string, got {split!r}")
        self.split = split
        self.raise_on = _statuses(DISCARDED if raise_on is None else raise_on)
        if not discard_failures:
            self.raise_on = frozenset()
        options = request_options(timeout_s=request_timeout, max_retries=max_retries)
        self.request_timeout: float = options.get("timeout_s", AREAL_REQUEST_TIMEOUT_S)
        self.max_retries: int = options.get("max_retries", 0)
        if user is not None and user != "scripted":
            raise ConfigError.choice("user", user, ("scripted",))
        self.scripted_user = user == "scripted"
        self.backend = backend_from_env(backend) if backend is not None else None
        self.concurrency = concurrency_from_env(concurrency) if concurrency is not None else None
        report_unused("Tau2Workflow", _qualified(unused))

    def endpoint(self, extra_kwargs: Mapping[str, Any]) -> Endpoint | None:
        """The model endpoint: AReaL's `base_url` / `api_key`, else the environment."""
        base_url = extra_kwargs.get("base_url") or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            return None
        api_key = extra_kwargs.get("api_key") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        model = self.model or os.environ.get("OPENAI_MODEL") or "default"
        return Endpoint(
            base_url=str(base_url),
            api_key=str(api_key),
            model=model_name(model),
            timeout_s=self.request_timeout,
            max_retries=self.max_retries,
        )

    def spec(self, data: Mapping[str, Any], endpoint: Endpoint | None) -> EpisodeSpec:
        """The episode a row describes (validated; a bad value raises ConfigError)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"data must be a dict, got {type(data).__name__}")
        unused: dict[str, set[str]] = {"data['econfig']": set(), "data['gconfig']": set()}
        env = env_settings(data.get("econfig"), self.env, unused=unused["data['econfig']"])
        sampling = sampling_from(data.get("gconfig"), self.sampling, unused=unused["data['gconfig']"])
        report_unused("Tau2Workflow row", _qualified(unused))
        domain = catalog.check_domain(data.get("domain", env.domain))
        row: dict[str, Any] = {
            "domain": domain,
            "split": self.split if catalog.splits_of(domain) else None,  # mock has no splits
            "solo_mode": env.solo_mode,
            "max_steps": env.max_steps,
        }
        if self.timeout is not None:
            row["timeout"] = self.timeout
        row.update({key: data[key] for key in ROW_FIELDS if key in data})
        policy = PolicyConfig(name="openai", endpoint=endpoint, sampling=sampling)
        user = UserConfig() if self.scripted_user else user_config(env)
        spec = spec_from_data(row, default_policy=policy, default_user=user)
        if spec.policy.name not in OFFLINE_POLICIES and not spec.solo_mode and spec.user.kind != "llm":
            if not self.scripted_user:
                raise ConfigError(
                    "a real policy talks to tau2's LLM user simulator (non-solo, AReaL's default): "
                    "set econfig.user_llm_base_url and econfig.user_llm (or TAU2_USER_LLM and "
                    "TAU2_USER_LLM_API_BASE); Tau2Workflow(user='scripted') runs it against the "
                    "scripted user, econfig.solo_mode=true runs tasks with a ticket solo"
                )
            _warn_scripted_user()
        return replace(spec, think_tool=env.think_tool)

    async def run(self, data: dict[str, Any], **extra_kwargs: Any) -> float:
        """Run the episode `data` describes; return tau2's reward as a float."""
        endpoint = self.endpoint(extra_kwargs)
        offline = isinstance(data, Mapping) and data.get("policy") in OFFLINE_POLICIES
        if endpoint is None and not offline:
            raise ConfigError(
                "Tau2Workflow needs a model endpoint: pass base_url= (AReaL inline mode) "
                "or set OPENAI_BASE_URL (subprocess mode)"
            )
        # The first call of a process imports tau2 and parses task files (seconds): off the
        # caller's loop, which AReaL shares with its own rollout machinery.
        spec = await anyio.to_thread.run_sync(functools.partial(self.spec, data, endpoint))
        engine = hook_engine(self.backend, self.concurrency)
        with using_http_client(extra_kwargs.get("http_client")):
            result = await run_spec(spec, engine)
        if result.status in self.raise_on:
            raise EpisodeDiscarded(result)
        return float(result.reward)


def _statuses(names: Iterable[object]) -> frozenset[Status]:
    valid = tuple(s.value for s in Status)
    out = set()
    for name in names:
        if not isinstance(name, str) or name not in valid:
            raise ConfigError.choice("raise_on status", name, valid)
        out.add(Status(name))
    return frozenset(out)


def _qualified(unused: Mapping[str, set[str]]) -> set[str]:
    return {f"{source}.{name}" for source, names in unused.items() for name in names}


def _warn_scripted_user() -> None:
    global _warned_scripted_user
    if _warned_scripted_user:
        return
    _warned_scripted_user = True
    _log.warning(
        "tau2-engine: a real policy is talking to the SCRIPTED user (no LLM user configured): "
        "set econfig.user_llm_base_url and econfig.user_llm (or TAU2_USER_LLM and "
        "TAU2_USER_LLM_API_BASE) for tau2's LLM user simulator"
    )
