"""An episode's deadline over its own work.

Time an episode spends queued for a shared slot (an environment, a model call) is the
run's congestion, not the episode's doing: while it waits, its deadline is paused, and it
is pushed back by the wait afterwards. The total wait is reported as `queue_wait_s`.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio


class Deadline:
    """The cancel scope of one episode's deadline (none: `timeout_s` None) and its queue waits."""

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        self.scope = anyio.CancelScope(
            deadline=anyio.current_time() + timeout_s if timeout_s else math.inf
        )
        self.queue_wait_s = 0.0
        self._paused: float | None = None

    @property
    def passed(self) -> bool:
        """The deadline ended the work it bounded."""
        return self.scope.cancelled_caught

    @asynccontextmanager
    async def queued(self) -> AsyncIterator[None]:
        """The block is time spent queued: the deadline pauses while it runs and moves back
        by its duration after (nested blocks count once)."""
        started = time.perf_counter()
        outermost = self._paused is None
        if outermost:
            self._paused = self.scope.deadline
            self.scope.deadline = math.inf
        try:
            yield
        finally:
            waited = time.perf_counter() - started
            if outermost:
                self.queue_wait_s += waited
                paused, self._paused = self._paused, None
                assert paused is not None
                self.scope.deadline = paused + waited

    @asynccontextmanager
    async def slot(self, limiter: anyio.CapacityLimiter) -> AsyncIterator[None]:
        """Hold one of `limiter`'s slots; the time spent waiting for it is not the episode's."""
        async with self.queued():
            await limiter.acquire()
        try:
            yield
        finally:
            limiter.release()
