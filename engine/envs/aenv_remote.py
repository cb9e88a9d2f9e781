"""The `aenv` backend: one remote AEnvironment sandbox per episode, as in the original
`tau2_rl` example.

`aenv.Environment(env_name, environment_variables=TAU2_*)` asks the scheduler
(`AENV_SYSTEM_URL`) for a sandbox running `tau2-engine serve-env`. Creation is retried
with bounded, jittered backoff (each retry a `retry` event, scope `env_create`); tool
calls are never retried (they may have changed the environment). The sandbox is released
whatever ends the episode, under a shielded cancel scope with a short deadline.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from engine.envs.aenv_session import (
    AenvSession,
    environment_variables,
    open_session,
    quiet_sdk_logging,
)
from engine.errors import EnvError

if TYPE_CHECKING:
    from aenv import Environment

    from engine.config import AenvConfig, EpisodeSpec
    from engine.events import EventLog

MAX_BACKOFF_S = 30.0


def backoff_s(config: AenvConfig, attempt: int) -> float:
    """Exponential in the attempt, capped, with full jitter on the upper half."""
    ceiling = min(MAX_BACKOFF_S, config.create_backoff_s * 2**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class AenvBackend:
    """Episodes in remote AEnvironment sandboxes."""

    name = "aenv"

    def __init__(self, config: AenvConfig, events: EventLog | None = None) -> None:
        quiet_sdk_logging()
        self.config = config
        self._events = events

    def _emit(self, event: str, **fields: object) -> None:
        if self._events is not None:
            self._events.emit(event, **fields)

    def _environment(self, spec: EpisodeSpec) -> Environment:
        from aenv import Environment

        return Environment(
            self.config.env_name,
            environment_variables=environment_variables(spec),
            aenv_url=self.config.system_url,
            ttl=self.config.ttl,
            timeout=self.config.call_timeout_s,
        )

    async def _create(self, spec: EpisodeSpec) -> Environment:
        """A ready sandbox for `spec`, after at most `create_attempts` tries."""
        attempts = self.config.create_attempts
        for attempt in range(attempts):
            env = self._environment(spec)
            try:
                await env.initialize()  # releases what it created when it fails with an error
                return env
            except BaseException as exc:
                if not isinstance(exc, Exception):  # cancelled (deadline, Ctrl-C): nothing leaks
                    with anyio.CancelScope(shield=True), anyio.move_on_after(self.config.release_timeout_s):
                        with contextlib.suppress(Exception):
                            await env.release()
                    raise
                await anyio.lowlevel.checkpoint_if_cancelled()
                if attempt + 1 >= attempts:
                    raise EnvError(f"creating {self.config.env_name} failed after {attempts} "
                                   f"attempts: {type(exc).__name__}: {exc}") from exc
                wait = backoff_s(self.config, attempt)
                self._emit("retry", attempt=attempt, error_type=type(exc).__name__,
                           error=str(exc)[:2000], backoff_s=wait, scope="env_create")
                await anyio.sleep(wait)
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def session(self, spec: EpisodeSpec) -> AsyncIterator[AenvSession]:
        started = time.perf_counter()
        env = await self._create(spec)
        address = env.dummy_instance_ip or self.config.system_url or "aenv"
        try:
            session = await open_session(env, str(address), spec, reset=False)
            self._emit("env_acquire", backend=self.name, latency_s=time.perf_counter() - started,
                       address=str(address), env_name=self.config.env_name)
            yield session
        finally:
            released = time.perf_counter()
            deadline = self.config.release_timeout_s
            with (anyio.CancelScope(shield=True), anyio.move_on_after(deadline),
                  contextlib.suppress(Exception)):
                await env.release()
            self._emit("env_release", backend=self.name, latency_s=time.perf_counter() - released,
                       address=str(address), env_name=self.config.env_name)

    async def aclose(self) -> None:
        return None
