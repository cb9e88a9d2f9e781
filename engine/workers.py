"""One run spread over worker processes (`tau2-engine run --workers N`).

One process runs its episodes on one core (the GIL serialises the Agents SDK, tau2's tools
and scoring). With workers, the parent plans the run, deals the episodes out (worker i
gets episodes i, i+N, i+2N, ...), prepares the `local` backend's domains (parsed databases,
templates, tool schemas) and forks N processes that inherit them, each an `Engine` with
its share of the limits. Workers stream their events and results back over a pipe; the parent writes
the run's one events file and builds its one summary:

- the parent emits the run's only `run_start` (with `workers` and `worker_pids`) and
  `run_end` (the merged summary, plus `workers`: each worker's pid, episodes, loop lag and
  peak RSS); a worker's own run_start/run_end never reach the file;
- every other event is a worker's, unchanged (same `run_id`), in the order its worker
  emitted it; events of different workers interleave;
- SIGINT/SIGTERM to the parent is forwarded to every worker once (workers run in their
  own process group, so a terminal's Ctrl-C reaches only the parent): workers cancel their
  episodes as a single-process run does, the parent then writes `run_end` with
  `interrupted: true`. A second signal kills the workers and exits at once. A worker dies
  with its parent (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from engine import interrupts
from engine.config import EngineConfig, EpisodeSpec
from engine.errors import ConfigError
from engine.events import EventLog
from engine.loop_lag import peak_rss_mb
from engine.results import EpisodeResult, RunSummary

EXIT_SIGINT, EXIT_SIGTERM = interrupts.EXIT_SIGINT, interrupts.EXIT_SIGTERM
_BATCH_EVENTS = 256
"""Events a worker sends in one message (fewer, larger pipe writes)."""


def deal(specs: Sequence[EpisodeSpec], workers: int) -> list[list[EpisodeSpec]]:
    """Worker i's episodes: i, i+N, i+2N, ... (each episode exactly once)."""
    return [list(specs[i::workers]) for i in range(workers)]


def worker_config(config: EngineConfig, workers: int) -> EngineConfig:
    """A worker's share of the run's limits (rounded up), same run_id."""

    def share(value: int | None) -> int | None:
        return None if value is None else math.ceil(value / workers)

    return dataclasses.replace(
        config,
        concurrency=math.ceil(config.concurrency / workers),
        max_envs=share(config.max_envs),
        max_model_calls=share(config.max_model_calls),
        cpu_workers=max(1, math.ceil(config.cpu_workers / workers)),
    )


class PipeSink:
    """A worker's event sink: events go to the parent in batches of serialised lines.
    `run_start` and `run_end` stay in the worker (the parent writes the run's own)."""

    def __init__(self, send: Callable[[tuple[str, Any]], None]) -> None:
        self._send = send
        self._batch: list[bytes] = []
        self.run_end: dict[str, Any] | None = None

    def write(self, event: dict[str, Any]) -> None:
        name = event["event"]
        if name == "run_start":
            return
        if name == "run_end":
            self.run_end = event
            return
        from engine.events import encode

        self._batch.append(encode(event)[0])
        if len(self._batch) >= _BATCH_EVENTS:
            self.flush()

    def flush(self) -> None:
        if self._batch:
            batch, self._batch = self._batch, []
            self._send(("events", b"\n".join(batch)))

    def close(self) -> None:
        self.flush()


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _worker_main(
    conn: multiprocessing.connection.Connection, specs: list[EpisodeSpec], config: EngineConfig
) -> None:
    """A worker process: run `specs` with an Engine; everything goes back over `conn`."""
    os.setpgrp()  # a terminal's Ctrl-C goes to the parent only; it forwards it once
    _die_with_parent()
    import logging

    from engine.engine import Engine
    from engine.process import run_loop
    from engine.shutdown import run_until_signalled

    sys.stdout = open(os.devnull, "w")  # noqa: SIM115  tau2's tools print; the parent owns the terminal
    logging.basicConfig(level=logging.WARNING)  # the rest of engine.process is inherited by fork
    lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        with lock:
            conn.send(message)

    sink = PipeSink(send)
    events = EventLog(config.run_id, [sink])
    engine = Engine(config, events)

    def forward(result: EpisodeResult) -> None:
        sink.flush()  # the episode's events before its result
        send(("result", result))

    engine.runtime.observers.append(forward)
    try:
        _, signalled = run_loop(run_until_signalled, engine, specs, lambda _: None, events)
    finally:
        events.close()
    end = sink.run_end or {}
    send(
        (
            "end",
            {
                "pid": os.getpid(),
                "episodes": len(specs),
                "loop_lag_s": end.get("loop_lag_s"),
                "peak_rss_mb": peak_rss_mb(),
                "interrupted": bool(end.get("interrupted", signalled is not None)),
            },
        )
    )
    conn.close()


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    end: dict[str, Any] | None = None


@contextlib.contextmanager
def _forwarded_signals(workers: list[_Worker]) -> Iterator[list[int]]:
    """The first SIGINT/SIGTERM goes to every live worker; a second kills them all."""
    received: list[int] = []

    def handle(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) == 1:
            print("tau2-engine: interrupted; cancelling episodes (again to exit now)", file=sys.stderr)
            for w in workers:
                if w.process.is_alive() and w.process.pid is not None:
                    os.kill(w.process.pid, signal.SIGINT)
        else:
            for w in workers:
                if w.process.is_alive():
                    w.process.kill()
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    early = interrupts.received()  # before this handler was in place (engine/interrupts.py)
    if early is not None:
        received.append(signal.SIGINT if early == EXIT_SIGINT else signal.SIGTERM)
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_workers(
    specs: Sequence[EpisodeSpec],
    config: EngineConfig,
    events: EventLog,
    workers: int,
    on_result: Callable[[EpisodeResult], None] | None = None,
) -> tuple[RunSummary, int | None]:
    """Run `specs` over `workers` processes; return the merged summary and the exit code a
    signal asked for (None: no signal). Writes run_start, the workers' events and run_end
    through `events`' sinks."""
    from engine.engine import VERSION
    from engine.process import event_loop_name

    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    # fork: workers inherit the imported modules and the prepared domains (copy-on-write);
    # they never touch the parent's sinks or threads.
    context = multiprocessing.get_context("fork")
    if config.backend == "local":
        from engine.envs.local import prepare_domain

        for key in sorted({(s.domain, s.split, s.solo_mode) for s in specs}, key=str):
            prepare_domain(*key)
    shares = deal(specs, workers)
    per_worker = worker_config(config, workers)
    pool: list[_Worker] = []
    summary = RunSummary()
    started = time.perf_counter()
    interrupted = True
    with _forwarded_signals(pool) as received:
        try:
            for share in shares:
                if received:  # interrupted before every worker started: start no more
                    break
                parent_end, child_end = context.Pipe(duplex=False)
                process = context.Process(
                    target=_worker_main, args=(child_end, share, per_worker), name="tau2-engine-worker"
                )
                process.start()
                child_end.close()
                pool.append(_Worker(process, parent_end))
            events.emit(
                "run_start",
                config=dataclasses.asdict(config),
                episodes_planned=len(specs),
                engine_version=VERSION,
                pid=os.getpid(),
                workers=workers,
                worker_pids=[w.process.pid for w in pool],
                event_loop=event_loop_name(),
            )
            _collect(pool, events, summary, on_result)
            interrupted = bool(received) or any(w.end is None or w.end["interrupted"] for w in pool)
        finally:
            for w in pool:
                w.process.join(timeout=30)
                if w.process.is_alive():
                    w.process.kill()
                    w.process.join()
                w.conn.close()
            summary.duration_s = time.perf_counter() - started
            ends = [w.end for w in pool if w.end is not None]
            lags = [e["loop_lag_s"] for e in ends if e["loop_lag_s"]]
            events.emit(
                "run_end",
                **summary.as_dict(),
                loop_lag_s=max(lags, key=lambda lag: lag["p99"]) if lags else None,
                peak_rss_mb=peak_rss_mb() + sum(e["peak_rss_mb"] for e in ends),
                interrupted=interrupted,
                workers=ends,
            )
    signalled = received[0] if received else None
    exit_code = None if signalled is None else EXIT_SIGINT if signalled == signal.SIGINT else EXIT_SIGTERM
    return summary, exit_code


def _collect(
    pool: list[_Worker],
    events: EventLog,
    summary: RunSummary,
    on_result: Callable[[EpisodeResult], None] | None,
) -> None:
    """Read every worker's messages until each has ended or died."""
    by_fd = {w.conn.fileno(): w for w in pool}
    while by_fd:
        for ready in multiprocessing.connection.wait([w.conn for w in by_fd.values()]):
            assert isinstance(ready, multiprocessing.connection.Connection)
            worker = by_fd[ready.fileno()]
            try:
                message: tuple[str, Any] = ready.recv()
            except EOFError:  # the worker exited (or died) without more to say
                del by_fd[ready.fileno()]
                continue
            kind, payload = message
            if kind == "events":
                for line in payload.split(b"\n"):
                    event = orjson.loads(line)
                    for sink in events.sinks:
                        sink.write(event)
                    events.counts[event["event"]] += 1
            elif kind == "result":
                summary.add(payload)
                if on_result is not None:
                    on_result(payload)
            elif kind == "end":
                worker.end = payload
