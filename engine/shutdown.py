"""Signals during a CLI run: the first SIGINT/SIGTERM cancels the run cleanly (every
started episode gets `episode_end` with status cancelled, then `run_end`, then the sink is
flushed); a second one exits at once, leaving only whole lines in the events file."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence

import anyio

from engine.config import EpisodeSpec
from engine.engine import Engine
from engine.events import EventLog
from engine.results import EpisodeResult, RunSummary

EXIT_SIGINT = 130
EXIT_SIGTERM = 143


async def run_until_signalled(
    engine: Engine,
    specs: Sequence[EpisodeSpec],
    on_result: Callable[[EpisodeResult], None],
    events: EventLog,
) -> tuple[RunSummary, int | None]:
    """Run; return the summary and the exit code a signal asked for (None: no signal)."""
    exit_code: int | None = None
    run_scope = anyio.CancelScope()

    async def watch() -> None:
        nonlocal exit_code
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if exit_code is None:
                    exit_code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
                    print(
                        "tau2-engine: interrupted; cancelling episodes (again to exit now)", file=sys.stderr
                    )
                    run_scope.cancel()
                else:
                    events.close()
                    os._exit(exit_code)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        with run_scope:
            await engine.run(specs, on_result)
        tg.cancel_scope.cancel()
    return engine.summary, exit_code
