"""AReaL's reward hook: `run_agent_return_reward(data) -> float`, async and sync.

One Engine per running event loop (anyio primitives belong to a loop), created on first
use. Set TAU2_ENGINE_EVENTS to a JSONL path to record every hook episode's events.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import os
import threading
import weakref
from typing import Any

import anyio

from engine.config import EngineConfig, PolicyConfig, policy_from_env, spec_from_data
from engine.engine import Engine
from engine.errors import EpisodeDiscarded
from engine.events import EventLog, EventSink, JsonlFileSink
from engine.results import DISCARDED, EpisodeResult

_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Engine] = weakref.WeakKeyDictionary()
_sinks: list[EventSink] | None = None
_lock = threading.Lock()


def _process_sinks() -> list[EventSink]:
    global _sinks
    with _lock:
        if _sinks is None:
            path = os.environ.get("TAU2_ENGINE_EVENTS")
            _sinks = [JsonlFileSink(path)] if path else []
            for sink in _sinks:
                atexit.register(sink.close)
        return _sinks


def hook_engine() -> Engine:
    """The engine of the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    engine = _engines.get(loop)
    if engine is None:
        concurrency = int(os.environ.get("TAU2_ENGINE_CONCURRENCY", "256"))
        config = EngineConfig(concurrency=concurrency)
        engine = Engine(config, EventLog(config.run_id, _process_sinks()))
        _engines[loop] = engine
    return engine


async def run_episode_from_data(data: dict[str, Any], *, policy: PolicyConfig | None = None) -> EpisodeResult:
    # The first call of a process imports tau2 and parses task files (seconds): off the
    # caller's loop, which AReaL shares with its own rollout machinery.
    spec = await anyio.to_thread.run_sync(
        functools.partial(spec_from_data, data, default_policy=policy or policy_from_env())
    )
    return await hook_engine().run_one(spec)


async def run_agent_return_reward(data: dict[str, Any], *, discard_failures: bool = True) -> float:
    """Run one episode described by `data` and return tau2's reward as a float.

    Episodes that ended infra_error, timeout or cancelled raise EpisodeDiscarded (so
    AReaL drops the trajectory) unless `discard_failures` is False (then 0.0).
    """
    result = await run_episode_from_data(data)
    if result.status in DISCARDED and discard_failures:
        raise EpisodeDiscarded(result)
    return float(result.reward)


def run_agent_return_reward_sync(data: dict[str, Any], *, discard_failures: bool = True) -> float:
    """Blocking form of run_agent_return_reward, for sync code and worker threads."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(_call, data, discard_failures)
    # This thread already runs a loop: ours gets a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(anyio.run, _call, data, discard_failures).result()


async def _call(data: dict[str, Any], discard_failures: bool) -> float:
    return await run_agent_return_reward(data, discard_failures=discard_failures)
