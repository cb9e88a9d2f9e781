"""AReaL's reward hook: `run_agent_return_reward(data) -> float`, async and sync.

Episodes run on an Engine of the running event loop (anyio primitives and connection pools
belong to a loop), one per backend, created on first use and closed when the loop shuts
down: an owner task on that loop holds it and, when `asyncio.run` / `anyio.run` cancels
the loop's remaining tasks at exit, closes its connections and environments. So a process
that runs `asyncio.run(...)` once per episode (AReaL's subprocess mode) keeps no engine,
loop or socket per call. The sync hook runs its own loop and closes its engine itself.

Environment: TAU2_ENGINE_EVENTS (a JSONL path for every hook episode's events),
TAU2_ENGINE_BACKEND (local, aenv-local, aenv; default local), TAU2_ENGINE_CONCURRENCY
(episodes in flight per loop; default 2048), TAU2_ENGINE_MAX_ENVS (environments open per
loop; default: the concurrency, 8 servers for aenv-local).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import logging
import os
import threading
import weakref
from typing import Any

import anyio

from engine.config import (
    BACKENDS,
    EngineConfig,
    EpisodeSpec,
    PolicyConfig,
    check_choice,
    policy_from_env,
    spec_from_data,
)
from engine.engine import Engine
from engine.errors import ConfigError, EpisodeDiscarded
from engine.events import EventLog, EventSink, JsonlFileSink
from engine.results import DISCARDED, EpisodeResult

DEFAULT_CONCURRENCY = 2048
"""Episodes in flight per event loop: above what AReaL's tau2 configs send at once
(max_concurrent_rollouts x n_samples, e.g. 256 x 8); waiting for a slot is reported."""

_log = logging.getLogger("engine.hooks")
_engines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Engine]] = (
    weakref.WeakKeyDictionary()
)
_owners: set[asyncio.Task[None]] = set()
"""Owner tasks of loop-scoped engines (the loop itself keeps only weak references)."""
_reported_full: weakref.WeakSet[Engine] = weakref.WeakSet()
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


def backend_from_env(backend: str | None = None) -> str:
    """The hook's environment backend: `backend`, else TAU2_ENGINE_BACKEND, else local."""
    name = backend or os.environ.get("TAU2_ENGINE_BACKEND") or "local"
    return check_choice("backend", name, BACKENDS)


def concurrency_from_env(concurrency: int | None = None) -> int:
    """Episodes in flight per loop: `concurrency`, else TAU2_ENGINE_CONCURRENCY, else 2048."""
    if concurrency is not None:
        value: object = concurrency
    else:
        raw = os.environ.get("TAU2_ENGINE_CONCURRENCY")
        try:
            value = int(raw) if raw else DEFAULT_CONCURRENCY
        except ValueError:
            raise ConfigError(f"TAU2_ENGINE_CONCURRENCY must be an integer >= 1, got {raw!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"concurrency must be an integer >= 1, got {value!r}")
    return value


AENV_LOCAL_SERVERS = 8
"""aenv-local: servers (processes) a loop's engine starts unless TAU2_ENGINE_MAX_ENVS says."""


def engine_config(backend: str | None = None, concurrency: int | None = None) -> EngineConfig:
    name = backend_from_env(backend)
    raw = os.environ.get("TAU2_ENGINE_MAX_ENVS")
    if raw:
        try:
            max_envs: int | None = int(raw)
        except ValueError:
            raise ConfigError(f"TAU2_ENGINE_MAX_ENVS must be an integer >= 1, got {raw!r}") from None
        if max_envs is not None and max_envs < 1:
            raise ConfigError(f"TAU2_ENGINE_MAX_ENVS must be an integer >= 1, got {raw!r}")
    else:
        max_envs = AENV_LOCAL_SERVERS if name == "aenv-local" else None
    return EngineConfig(concurrency=concurrency_from_env(concurrency), backend=name, max_envs=max_envs)


def hook_engine(backend: str | None = None, concurrency: int | None = None) -> Engine:
    """The running loop's engine for `backend` (created on first use, closed when the loop
    shuts down). The first call on a loop fixes its concurrency."""
    config = engine_config(backend, concurrency)
    loop = asyncio.get_running_loop()
    engines = _engines.setdefault(loop, {})
    engine = engines.get(config.backend)
    if engine is None:
        engine = Engine(config, EventLog(config.run_id, _process_sinks()))
        engines[config.backend] = engine
        # The owner of a loop-scoped engine is a task of that loop: it outlives every episode
        # and is cancelled only when the loop shuts down, then closes the engine.
        owner = loop.create_task(_own(engine, loop, config.backend), name=f"tau2-engine {config.backend}")
        _owners.add(owner)
        owner.add_done_callback(_owners.discard)
    return engine


async def _own(engine: Engine, loop: asyncio.AbstractEventLoop, backend: str) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        engines = _engines.get(loop, {})
        if engines.get(backend) is engine:
            del engines[backend]
        await engine.aclose()
        if not engines:
            _engines.pop(loop, None)


async def run_spec(spec: EpisodeSpec, engine: Engine) -> EpisodeResult:
    """Run one episode on `engine`; say so once when it waits for a slot."""
    if engine.episode_slots.value == 0 and engine not in _reported_full:
        _reported_full.add(engine)
        _log.warning(
            "tau2-engine: all %d episode slots of this event loop are busy; further episodes wait "
            "(raise TAU2_ENGINE_CONCURRENCY or Tau2Workflow(concurrency=...))",
            engine.config.concurrency,
        )
    return await engine.run_one(spec)


async def run_episode_from_data(
    data: dict[str, Any], *, policy: PolicyConfig | None = None, engine: Engine | None = None
) -> EpisodeResult:
    # The first call of a process imports tau2 and parses task files (seconds): off the
    # caller's loop, which AReaL shares with its own rollout machinery.
    spec = await anyio.to_thread.run_sync(
        functools.partial(spec_from_data, data, default_policy=policy or policy_from_env())
    )
    return await run_spec(spec, engine or hook_engine())


def reward_of(result: EpisodeResult, *, discard_failures: bool) -> float:
    if result.status in DISCARDED and discard_failures:
        raise EpisodeDiscarded(result)
    return float(result.reward)


async def run_agent_return_reward(data: dict[str, Any], *, discard_failures: bool = True) -> float:
    """Run one episode described by `data` and return tau2's reward as a float.

    Episodes that ended infra_error, timeout or cancelled raise EpisodeDiscarded (so
    AReaL drops the trajectory) unless `discard_failures` is False (then 0.0).
    """
    return reward_of(await run_episode_from_data(data), discard_failures=discard_failures)


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
    # This loop is ours and ends with the call: its engine is closed here, not left behind.
    config = engine_config()
    async with Engine(config, EventLog(config.run_id, _process_sinks())) as engine:
        result = await run_episode_from_data(data, engine=engine)
    return reward_of(result, discard_failures=discard_failures)
