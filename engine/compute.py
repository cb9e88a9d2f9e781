"""Episodes take turns at the event loop: at most `COMPUTING_EPISODES` of a run work on it
at once, between their waits on something outside the process (a model call, an LLM user's
reply, a remote environment's tool call), first come, first served.

When thousands of episodes' model replies arrive together, an ungated loop interleaves all
their turns: every await inside the Agents SDK's turn yields to the other episodes, so each
finishes its turn (and sends its next model request) only near the end of the whole burst,
and each turn's short-lived objects outlive many young garbage collections and are
traversed again and again on their way to the old generation. Taking turns, an episode's
next request leaves as soon as its own work is done, and its garbage dies young. Measured
with 10,000 telecom episodes in flight at 10 s model latency
(`benchmarks/bench_engine.py --only scale`): packing 0.72 -> 0.81, CPU per episode 6.3 ->
5.1 ms, event-loop lag p99 267 -> 20 ms, time in the garbage collector 48 s -> 14 s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

import anyio

from engine.deadline import Deadline

COMPUTING_EPISODES = 16
"""Episodes of one run working on the event loop at once (see the module's docstring). A
handful is enough to keep the loop busy; the rest wait their turn in order."""


class ComputeTurn:
    """One episode's place at its run's gate (`None`: no gate, as for an episode driven
    outside an engine). Entering waits for a turn, counted as queueing by the episode's
    deadline; `waiting()` gives the turn up while the episode waits on the outside."""

    def __init__(self, gate: anyio.CapacityLimiter | None = None, deadline: Deadline | None = None) -> None:
        self._gate = gate
        self._deadline = deadline
        self._token: object | None = None
        self._entering = False

    @property
    def held(self) -> bool:
        return self._token is not None

    async def enter(self) -> None:
        # Another task of the episode (a parallel tool call) already entering takes the turn
        # for both: the episode holds one turn, whichever of its tasks asked.
        if self._gate is None or self._token is not None or self._entering:
            return
        self._entering = True
        try:
            token = object()
            queued: AbstractAsyncContextManager[Any] = (
                self._deadline.queued() if self._deadline is not None else nullcontext()
            )
            async with queued:
                await self._gate.acquire_on_behalf_of(token)
            self._token = token
        finally:
            self._entering = False

    def leave(self) -> None:
        if self._gate is not None and self._token is not None:
            token, self._token = self._token, None
            self._gate.release_on_behalf_of(token)

    @asynccontextmanager
    async def waiting(self, waits: bool = True) -> AsyncIterator[None]:
        """Without the turn for the block; back in line after it (not after an exception:
        the episode is ending, and its end leaves the gate anyway). `waits` False: the block
        runs on the loop (an in-process tool, a scripted user) and keeps the turn."""
        held = waits and self.held
        if held:
            self.leave()
        yield
        if held:
            await self.enter()
