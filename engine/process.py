"""What only a program that owns its process may do (the CLI, a benchmark): process-wide
settings a library must leave alone. Workers forked by `run --workers` inherit them."""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, TypeVarTuple

import anyio

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

COLLECTOR_THRESHOLDS = (2000, 20, 1000)
"""`gc.set_threshold` for a process whose heap is thousands of episodes in flight.

CPython's default (700, 10, 10) runs a full collection whenever the objects promoted since
the last one exceed a quarter of the long-lived heap. Everything an episode keeps across a
model call (seconds) is promoted, so with thousands in flight full passes over the whole heap
come every second or so, find nothing, and stall the loop for 0.3 s (2,000 in flight) to
several seconds (10,000): measured, they were 60% of the process's CPU at 2,000 in flight
(`benchmarks/bench_engine.py --only scale`). Here young collections run 3x less often and
full ones at most every 1,000 middle ones (~40 M allocations). Episodes leave little cyclic
garbage (about 15 objects each, freed by the young collections)."""


def own_process() -> None:
    """tau2's logs into the standard logging tree (engine.tau2lib), the shared task databases
    kept out of the garbage collector's full passes (engine.envs.tau2_cache), and the
    collector tuned for many episodes in flight (`tune_garbage_collector`)."""
    from engine import tau2lib
    from engine.envs import tau2_cache

    tau2lib.route_logs_to_logging()
    tau2_cache.freeze_shared_data()
    tune_garbage_collector()


def tune_garbage_collector() -> None:
    """`COLLECTOR_THRESHOLDS`, process-wide: for a process one owns (the CLI does it; an AReaL
    rollout worker running thousands of episodes may too)."""
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


def event_loop_name() -> str:
    """The event loop `run_loop` uses: uvloop where it is installed, else asyncio's own."""
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"


def run_loop(func: Callable[[*Ts], Awaitable[T]], *args: *Ts) -> T:
    """`anyio.run` on a new event loop of `event_loop_name()`. The scheduling of thousands of
    episodes' tasks is a large share of an oracle run's CPU; uvloop's is cheaper. Only the
    new loop is affected (no event loop policy is installed)."""
    options: dict[str, Any] = {"use_uvloop": event_loop_name() == "uvloop"}
    return anyio.run(func, *args, backend_options=options)
