"""tau2-engine: an async, event-driven episode engine for agentic RL on tau2-bench."""

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
