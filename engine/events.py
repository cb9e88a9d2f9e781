"""Structured events: a structlog pipeline that hands each event dict to sinks.

Emitting never blocks the event loop: the JSONL file sink only appends the dict to an
in-memory queue; a writer thread serialises with orjson, writes whole lines and flushes
after every batch, so a killed process leaves at most one truncated last line. Nothing is
dropped: the queue is unbounded (it grows only while the disk is slower than the run).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import json
import sys
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
import structlog

from engine.errors import ConfigError

EVENT_NAMES: tuple[str, ...] = (
    "run_start",
    "episode_start",
    "turn",
    "tool_call",
    "reward",
    "judge",
    "retry",
    "env_acquire",
    "env_release",
    "episode_end",
    "run_end",
)


class EventSink(Protocol):
    def write(self, event: dict[str, Any]) -> None:
        """Accept one event; must not block on I/O."""

    def close(self) -> None:
        """Flush everything accepted so far and release resources (may block)."""


class MemorySink:
    """Keeps events in a list (tests, in-process analysis)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def write(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def close(self) -> None:
        return None

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


def _default(value: object) -> object:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def dumps(event: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(event, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        # orjson refuses what a model can still produce (integers past 64 bits): the
        # standard library writes those; anything it cannot write becomes a string.
        return json.dumps(event, default=lambda v: str(_default(v)), ensure_ascii=False).encode()


class JsonlFileSink:
    """Appends events as JSON Lines from a writer thread."""

    def __init__(self, path: str | Path, *, append: bool = True) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[bytes] = open(self.path, "ab" if append else "wb")  # noqa: SIM115
            if append and self._file.tell() > 0:
                self._terminate_partial_line()
        except OSError as exc:
            raise ConfigError(f"cannot write events file {str(path)!r}: {exc.strerror}") from exc
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._wakeup = threading.Condition()
        self._closing = False
        self.written = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="events-writer", daemon=True)
        self._thread.start()

    def _terminate_partial_line(self) -> None:
        # A writer killed mid-line left no newline; start appended records on a fresh line.
        with open(self.path, "rb") as handle:
            handle.seek(-1, 2)
            if handle.read(1) != b"\n":
                self._file.write(b"\n")

    def write(self, event: dict[str, Any]) -> None:
        self._pending.append(event)
        if len(self._pending) == 1:
            with self._wakeup:
                self._wakeup.notify()

    def _drain(self) -> None:
        while True:
            with self._wakeup:
                while not self._pending and not self._closing:
                    self._wakeup.wait(0.2)
                closing = self._closing
            self._write_batch()
            if closing and not self._pending:
                return

    def _write_batch(self) -> None:
        lines = []
        while self._pending:
            lines.append(dumps(self._pending.popleft()) + b"\n")
        if not lines:
            return
        try:
            self._file.write(b"".join(lines))
            self._file.flush()
            self.written += len(lines)
        except OSError as exc:  # keep draining so close() returns; the error is reported
            self.error = exc

    def close(self) -> None:
        if self._file.closed:
            return
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        self._thread.join()
        self._file.close()
        if self.error is not None:
            print(f"tau2-engine: events file {self.path}: {self.error}", file=sys.stderr)


class ConsoleSink:
    """Prints one short line per event (for --verbose)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream or sys.stderr
        self._renderer = structlog.dev.ConsoleRenderer(colors=self._stream.isatty())

    def write(self, event: dict[str, Any]) -> None:
        shown = {k: v for k, v in event.items() if k not in ("result", "reward_info", "config")}
        print(self._renderer(None, "info", shown), file=self._stream)

    def close(self) -> None:
        self._stream.flush()


class EventLog:
    """The run's event emitter: structlog processors, then every sink."""

    def __init__(self, run_id: str, sinks: list[EventSink] | None = None) -> None:
        self.run_id = run_id
        self.sinks: list[EventSink] = list(sinks or [])
        self.counts: collections.Counter[str] = collections.Counter()
        self._logger = structlog.wrap_logger(
            None,
            processors=[
                structlog.contextvars.merge_contextvars,
                self._stamp_run,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
                self._dispatch,
            ],
            context_class=dict,
        )
        self._closed = False

    def _stamp_run(
        self, _logger: object, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event["run_id"] = self.run_id
        return event

    def _dispatch(
        self, _logger: object, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        self.counts[event["event"]] += 1
        record = dict(event)
        for sink in self.sinks:
            sink.write(record)
        raise structlog.DropEvent

    def emit(self, event: str, /, **fields: Any) -> None:
        self._logger.info(event, **fields)

    def close(self) -> None:
        """Flush and close every sink (blocking; idempotent)."""
        if self._closed:
            return
        self._closed = True
        for sink in self.sinks:
            sink.close()


_current_log: contextvars.ContextVar[EventLog | None] = contextvars.ContextVar(
    "tau2_engine_event_log", default=None
)


@contextlib.contextmanager
def episode_context(log: EventLog | None = None, **fields: Any) -> Iterator[None]:
    """Bind episode identity to every event emitted inside (task-local); with `log`, also
    make it the episode's log for code that has no handle on it (e.g. a user simulator)."""
    token = _current_log.set(log) if log is not None else None
    try:
        with structlog.contextvars.bound_contextvars(**fields):
            yield
    finally:
        if token is not None:
            _current_log.reset(token)


def emit_in_episode(event: str, /, **fields: Any) -> None:
    """Emit on the current episode's log, if the caller runs inside an episode."""
    log = _current_log.get()
    if log is not None:
        log.emit(event, **fields)


def read_events(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the events of a JSONL file; a truncated last line is skipped."""
    with open(path, "rb") as handle:
        for raw in handle:
            line = raw.strip()
            if not line:
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a writer killed mid-line leaves a partial record
