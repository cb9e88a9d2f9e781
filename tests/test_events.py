import time
from pathlib import Path

import orjson
import pytest

from engine.errors import ConfigError
from engine.events import EventLog, JsonlFileSink, MemorySink, episode_context, read_events


def test_file_sink_writes_one_json_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    log = EventLog("run1", [JsonlFileSink(path)])
    for i in range(1000):
        log.emit("turn", turn=i, content="x" * 10)
    log.close()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 1000
    first = orjson.loads(lines[0])
    assert first["event"] == "turn" and first["run_id"] == "run1" and first["timestamp"].endswith("Z")


def test_episode_context_binds_identity_to_events() -> None:
    sink = MemorySink()
    log = EventLog("r", [sink])
    with episode_context(episode_id="e1", domain="telecom", task_id="t", sample=3, attempt=0):
        log.emit("turn", role="assistant")
    log.emit("run_end")
    assert sink.events[0]["episode_id"] == "e1" and sink.events[0]["sample"] == 3
    assert "episode_id" not in sink.events[1]


def test_emitted_field_named_name_is_kept() -> None:
    sink = MemorySink()
    EventLog("r", [sink]).emit("tool_call", name="get_user")
    assert sink.events[0]["name"] == "get_user"


def test_truncated_last_line_is_skipped_by_reader(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"event": "a"}\n{"event": "b"}\n{"event": "tru')
    assert [e["event"] for e in read_events(path)] == ["a", "b"]


def test_appending_after_a_truncated_line_starts_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"event": "a"}\n{"event": "tru')
    log = EventLog("r", [JsonlFileSink(path)])
    log.emit("b")
    log.close()
    assert [e["event"] for e in read_events(path)] == ["a", "b"]


def test_close_is_idempotent_and_flushes(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    sink = JsonlFileSink(path)
    log = EventLog("r", [sink])
    log.emit("x")
    log.close()
    log.close()
    assert sink.written == 1


def test_unwritable_events_path_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write events file"):
        JsonlFileSink(blocker / "sub" / "e.jsonl")


def test_event_orjson_cannot_encode_is_still_written_and_the_writer_lives_on(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    log = EventLog("r", [JsonlFileSink(path)])
    log.emit("tool_call", arguments={"amount": 123456789012345678901234567890})  # > 64 bits
    log.emit("episode_end", status="completed")
    log.close()
    events = list(read_events(path))
    assert [e["event"] for e in events] == ["tool_call", "episode_end"]
    assert b'"amount": 123456789012345678901234567890' in path.read_bytes()  # written exactly


def test_console_sink_prints_one_line_per_event_without_bulky_fields() -> None:
    import io

    from engine.events import ConsoleSink

    stream = io.StringIO()
    log = EventLog("r", [ConsoleSink(stream)])
    log.emit("tool_call", name="get_user", result="x" * 500)
    log.emit("reward", reward=1.0, reward_info={"db_check": {"db_match": True}})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "get_user" in lines[0] and "x" * 500 not in lines[0]
    assert "reward" in lines[1] and "db_match" not in lines[1]


class _DumpRaises:
    """A value whose serialisation raises something other than TypeError."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def model_dump(self, mode: str = "python") -> object:
        raise self.exc


class _StrRaises:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("not even the message")


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(_DumpRaises(ValueError("bad model")), id="model_dump-ValueError"),
        pytest.param(_DumpRaises(RuntimeError("bad model")), id="model_dump-RuntimeError"),
        pytest.param(_StrRaises(), id="str-RuntimeError"),
        pytest.param(_DumpRaises(_Unprintable()), id="exception-without-message"),
    ],
)
def test_writer_survives_an_unserialisable_event_and_reports_it(tmp_path: Path, bad: object) -> None:
    path = tmp_path / "e.jsonl"
    sink = JsonlFileSink(path)
    log = EventLog("r", [sink])
    log.emit("turn", turn=0)
    with episode_context(episode_id="e1", domain="telecom", task_id="t", sample=2, attempt=0):
        log.emit("tool_call", result=bad)
    for i in range(1, 50):
        log.emit("turn", turn=i)
    report = log.close()
    events = list(read_events(path))
    assert [e["event"] for e in events] == ["turn", "event_error"] + ["turn"] * 49
    record = events[1]
    assert record["failed_event"] == "tool_call" and record["run_id"] == "r"
    assert (record["episode_id"], record["task_id"], record["sample"]) == ("e1", "t", 2)
    assert record["error_type"] in ("ValueError", "RuntimeError", "_Unprintable") and record["error"]
    assert report is not None and (report.written, report.failed, report.error) == (50, 1, None)
    assert sink.close() == report  # idempotent, same report


def test_event_error_is_a_known_event_name() -> None:
    from engine.events import EVENT_NAMES

    assert "event_error" in EVENT_NAMES


def test_close_reports_an_io_error_and_prints_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sink = JsonlFileSink(tmp_path / "e.jsonl")

    class Full:
        closed = False

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

        def flush(self) -> None:
            return None

        def close(self) -> None:
            self.closed = True

    real = sink._file
    sink._file = Full()  # type: ignore[assignment]
    log = EventLog("r", [sink])
    log.emit("turn")
    log.emit("turn")
    report = log.close()
    real.close()
    assert report is not None and report.written == 0 and "No space left" in (report.error or "")
    assert capsys.readouterr().err.count("No space left") == 1


def test_event_log_close_sums_the_reports_of_its_sinks(tmp_path: Path) -> None:
    sinks = [JsonlFileSink(tmp_path / "a.jsonl"), MemorySink(), JsonlFileSink(tmp_path / "b.jsonl")]
    log = EventLog("r", sinks)
    for _ in range(3):
        log.emit("turn")
    report = log.close()
    assert report is not None and (report.written, report.failed) == (6, 0)
    assert EventLog("r", [MemorySink()]).close() is None


class _SlowFile(JsonlFileSink):
    """A sink on a slow disk that records how many events it ever held at once."""

    def _write_batch(self) -> None:
        time.sleep(0.002)
        super()._write_batch()


def test_a_slow_disk_applies_backpressure_instead_of_growing_memory(tmp_path: Path) -> None:
    path = tmp_path / "slow.jsonl"
    sink = _SlowFile(path, max_pending=64)
    log = EventLog("r", [sink])
    for i in range(5000):
        log.emit("turn", turn=i)
    report = log.close()
    assert report is not None and report.written == 5000 and report.failed == 0
    assert report.peak_pending <= 65  # the queue never held more than its bound (+ the one appended)
    assert report.waits > 0 and report.waited_s > 0
    assert [e["turn"] for e in read_events(path)] == list(range(5000))  # nothing lost, in order


def test_max_pending_below_two_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_pending"):
        JsonlFileSink(tmp_path / "e.jsonl", max_pending=1)


def test_loop_lag_memory_is_bounded_and_percentiles_stay_close() -> None:
    import random

    from engine.loop_lag import BUCKETS, LoopLagMonitor

    monitor = LoopLagMonitor()
    rng = random.Random(1)
    samples = [rng.expovariate(1 / 0.002) for _ in range(200_000)] + [0.0] * 1000 + [3.5]
    for lag in samples:
        monitor.record(lag)
    ordered = sorted(samples)
    exact = {q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.5, 0.99)}
    summary = monitor.summary()
    assert set(summary) == {"p50", "p99", "max", "samples"}
    assert summary["samples"] == len(samples) and summary["max"] == 3.5
    for q, key in ((0.5, "p50"), (0.99, "p99")):
        assert exact[q] <= summary[key] <= exact[q] * 1.021
    assert len(monitor._histogram) == BUCKETS and not hasattr(monitor, "samples")


def test_loop_lag_summary_of_no_samples_is_zero() -> None:
    from engine.loop_lag import LoopLagMonitor

    assert LoopLagMonitor().summary() == {"p50": 0.0, "p99": 0.0, "max": 0.0, "samples": 0}


def test_cli_run_warns_when_events_could_not_be_serialised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine import events as events_module
    from engine.cli import main

    real = events_module.dumps

    def dumps(event: dict[str, object]) -> bytes:
        if event["event"] == "run_start":
            raise ValueError("injected")
        return real(event)

    monkeypatch.setattr(events_module, "dumps", dumps)
    path = tmp_path / "e.jsonl"
    assert main(["run", "--domain", "mock", "--limit", "2", "--events", str(path)]) == 0
    assert "1 events could not be serialised" in capsys.readouterr().err
    assert [e["failed_event"] for e in read_events(path) if e["event"] == "event_error"] == ["run_start"]
