"""Structured events: a structlog pipeline that hands each event dict to sinks.

Emitting does not wait for the disk: the JSONL file sink only appends the dict to an
in-memory queue; a writer thread serialises with orjson, writes whole lines and flushes
after every batch, so a killed process leaves at most one truncated last line.

Nothing is dropped and memory stays bounded: the queue holds at most `max_pending` events
(default 100,000). Past that the disk is slower than the run, and `write()` blocks the
emitting thread (the event loop) until the writer has drained the queue to half of it:
backpressure that slows the run to the disk's pace instead of growing memory without
bound. Each such wait is counted and timed in the sink's `WriteReport`.

An event that cannot be serialised (its `model_dump` or `__str__` raises) is written as
an `event_error` record naming the event, the episode and the exception; the writer thread
never stops before `close()`, which returns a `WriteReport` (events written, events that
failed, the first I/O error, backpressure waits).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import json
import sys
import threading
import time
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
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
    "event_error",
)

IDENTITY_FIELDS: tuple[str, ...] = ("run_id", "episode_id", "domain", "task_id", "sample", "attempt")
"""Fields an `event_error` record copies from the event it replaces."""

DEFAULT_MAX_PENDING = 100_000
"""Events a file sink holds in memory before `write()` waits for the writer."""


@dataclass(frozen=True, kw_only=True)
class WriteReport:
    """What a sink did with the events it accepted (returned by `close()`)."""

    written: int = 0
    """Events written as themselves."""
    failed: int = 0
    """Events that could not be serialised, each written as an `event_error` record."""
    error: str | None = None
    """The first I/O error (the events of a failed write are lost), else None."""
    waits: int = 0
    """Times `write()` waited for the writer to drain a full queue (backpressure)."""
    waited_s: float = 0.0
    """Seconds `write()` spent waiting in total."""
    peak_pending: int = 0
    """Most events queued at once."""

    def __add__(self, other: WriteReport) -> WriteReport:
        return WriteReport(
            written=self.written + other.written,
            failed=self.failed + other.failed,
            error=self.error or other.error,
            waits=self.waits + other.waits,
            waited_s=self.waited_s + other.waited_s,
            peak_pending=max(self.peak_pending, other.peak_pending),
        )


class EventSink(Protocol):
    def write(self, event: dict[str, Any]) -> None:
        """Accept one event; must not block on I/O."""

    def close(self) -> WriteReport | None:
        """Flush everything accepted so far and release resources (may block); a sink that
        writes somewhere reports what it wrote."""


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
    """One event as JSON; raises whatever a value's `model_dump` or `__str__` raises."""
    try:
        return orjson.dumps(event, default=_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        # orjson refuses what a model can still produce (integers past 64 bits): the
        # standard library writes those; anything it cannot write becomes a string.
        return json.dumps(event, default=lambda v: str(_default(v)), ensure_ascii=False).encode()


def _describe(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # an exception whose own __str__ fails still gets a record
        return f"<{type(exc).__name__} with an unprintable message>"


def error_record(event: Mapping[str, Any], exc: Exception) -> dict[str, Any]:
    """The `event_error` record that stands in for an event `dumps` could not write."""
    name = event.get("event")
    record: dict[str, Any] = {
        "event": "event_error",
        "timestamp": event.get("timestamp")
        if isinstance(event.get("timestamp"), str)
        else datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "failed_event": name if isinstance(name, str) else repr(type(name)),
    }
    for key in IDENTITY_FIELDS:
        value = event.get(key)
        if isinstance(value, str) or (isinstance(value, int) and -(2**63) <= value < 2**63):
            record[key] = value  # only what orjson surely writes: this record must not fail
    record["error_type"] = type(exc).__name__
    record["error"] = _describe(exc)
    return record


def encode(event: Mapping[str, Any]) -> tuple[bytes, bool]:
    """One event as a JSON line without the newline, and whether it was written as itself
    (False: an `event_error` record stands in for it). Never raises on a bad value."""
    try:
        return dumps(event), True
    except Exception as exc:  # a value's model_dump/__str__ may raise anything
        return orjson.dumps(error_record(event, exc)), False


class JsonlFileSink:
    """Appends events as JSON Lines from a writer thread, holding at most `max_pending`
    events in memory (see the module docstring)."""

    def __init__(
        self, path: str | Path, *, append: bool = True, max_pending: int = DEFAULT_MAX_PENDING
    ) -> None:
        if max_pending < 2:
            raise ConfigError(f"max_pending must be >= 2, got {max_pending}")
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[bytes] = open(self.path, "ab" if append else "wb")  # noqa: SIM115
            if append and self._file.tell() > 0:
                self._terminate_partial_line()
        except OSError as exc:
            raise ConfigError(f"cannot write events file {str(path)!r}: {exc.strerror}") from exc
        self.max_pending = max_pending
        self._low_water = max_pending // 2
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        lock = threading.Lock()
        self._wakeup = threading.Condition(lock)
        self._room = threading.Condition(lock)
        self._closing = False
        self.written = 0
        self.failed = 0
        self.waits = 0
        self.waited_s = 0.0
        self.peak_pending = 0
        self.error: BaseException | None = None
        self._report: WriteReport | None = None
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
        pending = len(self._pending)
        if pending > self.peak_pending:
            self.peak_pending = pending
        if pending == 1:
            with self._wakeup:
                self._wakeup.notify()
        elif pending > self.max_pending:
            self._wait_for_room()

    def _wait_for_room(self) -> None:
        started = time.perf_counter()
        with self._room:
            self._wakeup.notify()
            while len(self._pending) > self._low_water and self._thread.is_alive():
                self._room.wait(0.2)
        self.waits += 1
        self.waited_s += time.perf_counter() - started

    def _drain(self) -> None:
        while True:
            with self._wakeup:
                while not self._pending and not self._closing:
                    self._wakeup.wait(0.2)
                closing = self._closing
            self._write_batch()
            with self._room:
                self._room.notify_all()
            if closing and not self._pending:
                return

    def _write_batch(self) -> None:
        lines = []
        failed = 0
        # At most one queue's worth per batch: lines waiting to be written count too.
        for _ in range(min(len(self._pending), self.max_pending)):
            line, ok = encode(self._pending.popleft())
            lines.append(line + b"\n")
            failed += not ok
        if not lines:
            return
        try:
            self._file.write(b"".join(lines))
            self._file.flush()
        except Exception as exc:  # keep draining so close() returns; reported there
            if self.error is None:
                self.error = exc
            return
        self.written += len(lines) - failed
        self.failed += failed

    def report(self) -> WriteReport:
        """What the sink has done so far."""
        return WriteReport(
            written=self.written,
            failed=self.failed,
            error=None if self.error is None else _describe(self.error),
            waits=self.waits,
            waited_s=self.waited_s,
            peak_pending=self.peak_pending,
        )

    def close(self) -> WriteReport:
        if self._report is not None:
            return self._report
        with self._wakeup:
            self._closing = True
            self._wakeup.notify()
        self._thread.join()
        self._file.close()
        self._report = self.report()
        if self.error is not None:
            print(f"tau2-engine: events file {self.path}: {self._report.error}", file=sys.stderr)
        return self._report


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
        self._report: WriteReport | None = None

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

    def close(self) -> WriteReport | None:
        """Flush and close every sink (blocking; idempotent). Returns the sum of the sinks'
        reports, None when no sink reports."""
        if self._closed:
            return self._report
        self._closed = True
        for sink in self.sinks:
            report = sink.close()
            if report is not None:
                self._report = report if self._report is None else self._report + report
        return self._report


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
