"""tau2-engine: an async, event-driven episode engine for agentic RL on tau2-bench.

The public names load on first use (PEP 562): `import engine` stays cheap, so the CLI can
take over Ctrl-C before the Agents SDK, openai and tau2 are imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config import EngineConfig, EpisodeSpec, PolicyConfig, Sampling, UserConfig
    from engine.engine import Engine
    from engine.errors import (
        AgentMisbehaved,
        ConfigError,
        EngineError,
        EnvError,
        EpisodeDiscarded,
        ModelError,
    )
    from engine.events import EventLog, JsonlFileSink, MemorySink
    from engine.hooks import run_agent_return_reward, run_agent_return_reward_sync
    from engine.results import EpisodeResult, RunSummary, Status, pass_hat_k
    from engine.workflow import Tau2Workflow

_HOMES = {
    "AgentMisbehaved": "engine.errors",
    "ConfigError": "engine.errors",
    "Engine": "engine.engine",
    "EngineConfig": "engine.config",
    "EngineError": "engine.errors",
    "EnvError": "engine.errors",
    "EpisodeDiscarded": "engine.errors",
    "EpisodeResult": "engine.results",
    "EpisodeSpec": "engine.config",
    "EventLog": "engine.events",
    "JsonlFileSink": "engine.events",
    "MemorySink": "engine.events",
    "ModelError": "engine.errors",
    "PolicyConfig": "engine.config",
    "RunSummary": "engine.results",
    "Sampling": "engine.config",
    "Status": "engine.results",
    "Tau2Workflow": "engine.workflow",
    "UserConfig": "engine.config",
    "pass_hat_k": "engine.results",
    "run_agent_return_reward": "engine.hooks",
    "run_agent_return_reward_sync": "engine.hooks",
}

__all__ = [
    "AgentMisbehaved",
    "ConfigError",
    "Engine",
    "EngineConfig",
    "EngineError",
    "EnvError",
    "EpisodeDiscarded",
    "EpisodeResult",
    "EpisodeSpec",
    "EventLog",
    "JsonlFileSink",
    "MemorySink",
    "ModelError",
    "PolicyConfig",
    "RunSummary",
    "Sampling",
    "Status",
    "Tau2Workflow",
    "UserConfig",
    "pass_hat_k",
    "run_agent_return_reward",
    "run_agent_return_reward_sync",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
