"""The engine: runs many episodes concurrently in one anyio task group.

Separate limiters bound episodes in flight, open environments, model calls and CPU
threads. Results stream out as episodes finish. A run emits `run_start` and `run_end`
around its episodes, whatever ends it.

The engine owns what its episodes share: the environment backend, the policy's and the
LLM users' connection pools, the NL-assertion judge's, the loop-lag monitor, and the event
log when it made it. `async with Engine(...) as engine:` closes them on exit; an engine
used without `async with` closes them at the end of `run`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from engine import stamp
from engine.clients import ClientPool
from engine.compute import COMPUTING_EPISODES
from engine.config import OFFLINE_POLICIES, EngineConfig, EpisodeSpec, check_specs, spec_shape
from engine.envs.base import EnvBackend
from engine.envs.local import LocalBackend
from engine.episode import EpisodeRuntime, run_episode
from engine.errors import ConfigError, EndpointRejected, EnvError
from engine.events import EventLog, episode_context
from engine.extras import require_aenv
from engine.loop_lag import LoopLagMonitor, peak_rss_mb
from engine.policies.factory import ModelFactory
from engine.results import EpisodeResult, RunSummary, Status

VERSION = "0.1.0"


def make_backend(
    config: EngineConfig, cpu: anyio.CapacityLimiter, events: EventLog | None = None
) -> EnvBackend:
    if config.backend == "local":
        return LocalBackend(cpu, ClientPool(config.model_slots))
    if config.backend in ("aenv", "aenv-local"):
        require_aenv(f"backend {config.backend!r}")
    if config.backend == "aenv-local":
        from engine.envs.aenv_local import AenvLocalBackend

        return AenvLocalBackend(config.env_slots, config.aenv, events)
    if config.backend == "aenv":
        from engine.envs.aenv_remote import AenvBackend

        return AenvBackend(config.aenv, events)
    raise ConfigError.choice("backend", config.backend, ("aenv", "aenv-local", "local"))


EPISODE_RETRY_BACKOFF_S = 0.5


def _retryable(result: EpisodeResult) -> bool:
    """A first attempt that ended infra_error because its environment failed, and lost
    nothing non-idempotent: the environment is discarded anyway, and model requests are
    only replayable for scripted policies (a recording proxy such as AReaL's would see a
    real model's requests twice)."""
    return (
        result.status is Status.INFRA_ERROR
        and result.error_type == EnvError.__name__
        and result.attempt == 0
        and (result.policy in OFFLINE_POLICIES or result.model_calls == 0)
    )


class Engine:
    """Runs EpisodeSpecs; one instance per run (or one per process for the reward hook)."""

    def __init__(
        self,
        config: EngineConfig,
        events: EventLog | None = None,
        *,
        backend: EnvBackend | None = None,
        model_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.config = config
        self._owns_events = events is None
        self.events = events or EventLog(config.run_id)
        self._entered = False
        self.cpu_limiter = anyio.CapacityLimiter(config.cpu_workers)
        self.backend = backend or make_backend(config, self.cpu_limiter, self.events)
        self.runtime = EpisodeRuntime(
            events=self.events,
            backend=self.backend,
            env_limiter=anyio.CapacityLimiter(config.env_slots),
            model_limiter=anyio.CapacityLimiter(config.model_slots),
            make_model=model_factory or ModelFactory(config.model_slots),
            backend_name=config.backend,
            compute_gate=anyio.CapacityLimiter(COMPUTING_EPISODES),
        )
        self.episode_slots = anyio.Semaphore(config.concurrency)
        self.lag = LoopLagMonitor()
        self.summary = RunSummary()
        self._valid_shapes: set[tuple[object, ...]] = set()
        """Spec shapes already checked (engine.config.spec_shape)."""

    async def __aenter__(self) -> Engine:
        self._entered = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._entered = False
        await self.aclose()
        if self._owns_events:
            self.events.close()

    async def _check(self, specs: list[EpisodeSpec]) -> None:
        """ConfigError for the first bad spec; a shape checked before is not checked again,
        so a hook's stream of episodes pays the thread hop once per task shape."""
        unchecked = [spec for spec in specs if spec_shape(spec) not in self._valid_shapes]
        if unchecked:
            await anyio.to_thread.run_sync(check_specs, unchecked, self._valid_shapes)

    async def run_one(self, spec: EpisodeSpec) -> EpisodeResult:
        """One episode; a bad spec raises ConfigError before it starts."""
        async with self.episode_slots:
            await self._check([spec])
            return await run_episode(spec, self.runtime)

    @asynccontextmanager
    async def stream(
        self, specs: Iterable[EpisodeSpec]
    ) -> AsyncIterator[MemoryObjectReceiveStream[EpisodeResult]]:
        """Start every episode (at most `concurrency` at once); yield a stream of results in
        completion order. Leaving the block early cancels what is still running. A bad spec
        raises ConfigError before any episode starts; a failure inside an episode is that
        episode's result."""
        specs = list(specs)
        await self._check(specs)
        async with self._results(specs) as results:
            yield results

    @asynccontextmanager
    async def _results(
        self, specs: list[EpisodeSpec]
    ) -> AsyncIterator[MemoryObjectReceiveStream[EpisodeResult]]:
        send, receive = anyio.create_memory_object_stream[EpisodeResult](self.config.concurrency)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._launch, specs, send)
            try:
                yield receive
            finally:
                tg.cancel_scope.cancel()
                receive.close()

    async def _launch(self, specs: list[EpisodeSpec], send: MemoryObjectSendStream[EpisodeResult]) -> None:
        async with send, anyio.create_task_group() as tg:
            for spec in specs:
                await self.episode_slots.acquire()
                tg.start_soon(self._episode, spec, send.clone())

    async def _episode(self, spec: EpisodeSpec, send: MemoryObjectSendStream[EpisodeResult]) -> None:
        async with send:
            try:
                result = await run_episode(spec, self.runtime)
                if _retryable(result):  # a dead environment: once more, on a fresh one
                    backoff = EPISODE_RETRY_BACKOFF_S * random.uniform(0.5, 1.5)
                    with episode_context(
                        episode_id=result.episode_id,
                        domain=spec.domain,
                        task_id=spec.task_id,
                        sample=spec.sample,
                        attempt=0,
                    ):
                        self.events.emit(
                            "retry",
                            attempt=0,
                            error_type=result.error_type,
                            error=result.error,
                            backoff_s=backoff,
                            scope="episode",
                        )
                    await anyio.sleep(backoff)
                    result = await run_episode(spec, self.runtime, attempt=1)
            finally:
                self.episode_slots.release()
            await send.send(result)

    async def run(
        self,
        specs: Iterable[EpisodeSpec],
        on_result: Callable[[EpisodeResult], None] | None = None,
    ) -> RunSummary:
        """A whole run: run_start, every episode, run_end (also when cancelled). A bad spec
        raises ConfigError before run_start."""
        specs = list(specs)
        await self._check(specs)
        summary = self.summary = RunSummary()
        stamps = await anyio.to_thread.run_sync(stamp.distinct, specs)
        self.events.emit(
            "run_start",
            config=asdict(self.config),
            episodes_planned=len(specs),
            engine_version=VERSION,
            pid=os.getpid(),
            stamps=stamps,
            event_loop=_event_loop_name(),
        )
        started = time.perf_counter()
        interrupted = True
        # Every finished episode counts, also those ended by cancellation (never streamed).
        self.runtime.observers.append(summary.add)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.lag.run)
                async with self._results(specs) as results:
                    async for result in results:
                        if on_result is not None:
                            on_result(result)
                        if result.error_type == EndpointRejected.__name__:
                            # a bad key or model fails every episode alike: stop at the first
                            summary.stopped_by = result
                            break
                tg.cancel_scope.cancel()
            interrupted = False
        finally:
            self.runtime.observers.remove(summary.add)
            if not self._entered:  # nobody else will close what the run used
                await self.aclose()
            summary.duration_s = time.perf_counter() - started
            self.events.emit(
                "run_end",
                **summary.as_dict(),
                loop_lag_s=self.lag.summary(),
                peak_rss_mb=peak_rss_mb(),
                interrupted=interrupted,
            )
        return summary

    async def aclose(self) -> None:
        """Release the backend and every connection pool (shielded, bounded); the engine
        may run again afterwards and reopens what it needs."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            await self.backend.aclose()
            await self.runtime.judge.aclose()
            close_models = getattr(self.runtime.make_model, "aclose", None)
            if close_models is not None:
                await close_models()


def _event_loop_name() -> str:
    """The running event loop's implementation: "asyncio" or "uvloop" (engine.process)."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]
