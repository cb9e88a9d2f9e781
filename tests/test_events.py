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
