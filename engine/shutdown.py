"""Signals during a CLI run: the first SIGINT/SIGTERM cancels the run cleanly (every
started episode gets `episode_end` with status cancelled, then `run_end`, then the sink is
flushed); a second one exits at once, leaving only whole lines in the events file. A signal
that arrived before the run's loop was up (recorded by engine/interrupts.py) counts as the
first: the run stops before its first episode."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence

import anyio
from anyio.abc import TaskStatus

from engine.config import EpisodeSpec
from engine.engine import Engine
from engine.events import EventLog
from engine.interrupts import EXIT_SIGINT, EXIT_SIGTERM, exit_code_of, received
from engine.results import EpisodeResult, RunSummary

__all__ = ["EXIT_SIGINT", "EXIT_SIGTERM", "run_until_signalled"]


async def run_until_signalled(
    engine: Engine,
    specs: Sequence[EpisodeSpec],
    on_result: Callable[[EpisodeResult], None],
    events: EventLog,
) -> tuple[RunSummary, int | None]:
    """Run; return the summary and the exit code a signal asked for (None: no signal)."""
    exit_code: int | None = None
    run_scope = anyio.CancelScope()

    def first(code: int) -> None:
        nonlocal exit_code
        exit_code = code
        print("tau2-engine: interrupted; cancelling episodes (again to exit now)", file=sys.stderr)
        run_scope.cancel()

    async def watch(*, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            # the receiver now has the signals; one that came before it is not lost
            early = received()
            if early is not None:
                first(early)
            task_status.started()
            async for signum in signals:
                if exit_code is None:
                    first(exit_code_of(signum))
                else:
                    events.close()
                    os._exit(exit_code)

    async with anyio.create_task_group() as tg:
        await tg.start(watch)
        with run_scope:
            await engine.run(specs, on_result)
        tg.cancel_scope.cancel()
    return engine.summary, exit_code
