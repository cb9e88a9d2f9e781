"""AReaL's tau2 example configuration, as the engine reads it.

AReaL 1.0.4's `examples/tau2/train.py` builds its workflow with
`econfig=asdict(Tau2EnvConfig(...))`, `gen_args` (OpenAI request arguments) and `timeout`;
a dataset row is `{"task_id", "split"}` with the domain from `econfig`, and a row may carry
its own `econfig` / `gconfig`. This module turns those into the engine's settings. Fields
the engine does not use (`turn_discount`, `invalid_format_penalty`, `top_k`, ...) are
collected for a one-time report, never an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from engine import catalog
from engine.config import (
    USER_RETRIES_ENV,
    USER_TIMEOUT_ENV,
    UserConfig,
    check_bool,
    check_int,
    user_from_env,
)
from engine.errors import ConfigError

AREAL_DEFAULT_SPLIT = "train"
"""AReaL's example reads `data.get("split", "train")`."""

ECONFIG_USED: tuple[str, ...] = (
    "add_thinking_tool", "domain", "max_steps", "solo_mode", "user_llm", "user_llm_args",
    "user_llm_base_url",
)
"""Tau2EnvConfig fields the engine uses (the others are reported as unused)."""

AREAL_USER_TIMEOUT_S = 120.0
AREAL_USER_RETRIES = 3
"""AReaL's example: its user simulator client's timeout and retries."""


@dataclass(frozen=True, kw_only=True)
class EnvSettings:
    """Tau2EnvConfig as the engine uses it (defaults: Tau2EnvConfig's own)."""

    domain: str = catalog.DEFAULT_DOMAIN
    """tau2 domain of the dataset rows."""
    max_steps: int = 100
    """tau2 step budget of an episode."""
    solo_mode: bool = False
    """Agent works alone from the ticket (True) or talks to the simulated user."""
    think_tool: bool = False
    """`add_thinking_tool`: offer the agent the `think` tool."""
    user_base_url: str | None = None
    """`user_llm_base_url`: the LLM user's endpoint."""
    user_model: str | None = None
    """`user_llm`: the LLM user's model."""
    user_args: Mapping[str, Any] | None = None
    """`user_llm_args`: extra request fields of the LLM user's calls."""


def env_settings(econfig: object, base: EnvSettings, *, unused: set[str]) -> EnvSettings:
    """`base` updated by an econfig mapping (a Tau2EnvConfig as a dict)."""
    if econfig is None:
        return base
    if not isinstance(econfig, Mapping):
        raise ConfigError(f"econfig must be a mapping (asdict(Tau2EnvConfig)), got {type(econfig).__name__}")
    out = base
    for key, value in econfig.items():
        if key not in ECONFIG_USED:
            unused.add(str(key))
        elif key == "domain":
            out = replace(out, domain=catalog.check_domain(value))
        elif key == "max_steps":
            out = replace(out, max_steps=check_int("econfig.max_steps", value, minimum=1))
        elif key == "solo_mode":
            out = replace(out, solo_mode=check_bool("econfig.solo_mode", value))
        elif key == "add_thinking_tool":
            out = replace(out, think_tool=check_bool("econfig.add_thinking_tool", value))
        elif key == "user_llm_base_url":
            out = replace(out, user_base_url=_optional_str("econfig.user_llm_base_url", value))
        elif key == "user_llm":
            out = replace(out, user_model=_optional_str("econfig.user_llm", value))
        elif key == "user_llm_args":
            if value is not None and not isinstance(value, Mapping):
                raise ConfigError(f"econfig.user_llm_args must be a mapping, got {value!r}")
            out = replace(out, user_args=dict(value) if value else None)
    return out


def _optional_str(name: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value


def user_config(env: EnvSettings) -> UserConfig:
    """The user simulator of non-solo episodes: the LLM user econfig names (`user_llm` on
    `user_llm_base_url`; litellm's `openai/` prefix is not sent), else TAU2_USER_LLM*, else
    the scripted user (which the workflow refuses for a real policy unless asked for)."""
    if env.user_base_url and not (env.user_model or os.environ.get("TAU2_USER_LLM")):
        raise ConfigError("econfig.user_llm_base_url is set but econfig.user_llm (the user model) is not")
    if not env.user_base_url:
        return replace(user_from_env(), request_args=env.user_args)
    # AReaL's example gives its user client a 120 s timeout and 3 retries.
    timeout_s = None if os.environ.get(USER_TIMEOUT_ENV) else AREAL_USER_TIMEOUT_S
    retries = None if os.environ.get(USER_RETRIES_ENV) else AREAL_USER_RETRIES
    user = user_from_env(model=env.user_model, base_url=env.user_base_url, timeout_s=timeout_s,
                         max_retries=retries)
    return replace(user, request_args=env.user_args)
