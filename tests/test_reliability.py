"""Reliability at the CLI: signals, resume, deadlines (real subprocesses, real signals)."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.events import read_events
from tests.helpers import assert_event_invariants

CLI = [sys.executable, "-m", "engine.cli"]


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_event(path: Path, name: str, proc: subprocess.Popen[str], limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    needle = f'"event":"{name}"'.encode()  # orjson writes compact JSON
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.exists() and needle in path.read_bytes():
            return
        time.sleep(0.05)
    raise AssertionError(f"no {name} event within {limit_s}s")


def test_sigint_cancels_cleanly_and_resume_completes_each_episode_exactly_once(tmp_path: Path) -> None:
    events = tmp_path / "E.jsonl"
    args = ["run", "--domain", "telecom", "--n-samples", "2", "--concurrency", "32", "--events", str(events)]
    proc = _start(*args, "--latency-ms", "300")
    _wait_for_event(events, "episode_end", proc)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 20
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    first = list(read_events(events))
    assert_event_invariants(first)
    statuses = collections.Counter(e["status"] for e in first if e["event"] == "episode_end")
    assert statuses["cancelled"] > 0 and set(statuses) <= {"completed", "cancelled"}
    assert [e["event"] for e in first].count("run_end") == 1 and first[-1]["event"] == "run_end"
    assert first[-1]["interrupted"] is True

    resumed = subprocess.run([*CLI, *args, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resume: {statuses['completed']} of 228 episodes already done" in resumed.stdout
    every = list(read_events(events))
    assert_event_invariants(every)
    completed = collections.Counter(
        (e["task_id"], e["sample"])
        for e in every
        if e["event"] == "episode_end" and e["status"] == "completed"
    )
    assert len(completed) == 228 and set(completed.values()) == {1}


ENTRYPOINT = [sys.executable, "-c", "from engine.cli import entrypoint; entrypoint()"]
"""What the `tau2-engine` script runs (engine.cli:entrypoint), from the first import on."""

LOOP_REACTION = timedelta(seconds=0.5)
"""A signal reaches the run's event loop at its next iteration; episodes may start until then."""


@pytest.mark.parametrize(
    ("after_s", "signum", "code"),
    [
        (1.0, signal.SIGINT, 130),
        (2.0, signal.SIGINT, 130),
        (3.0, signal.SIGINT, 130),
        (5.0, signal.SIGINT, 130),
        (2.0, signal.SIGTERM, 143),
    ],
    ids=["sigint-1s", "sigint-2s", "sigint-3s", "sigint-5s", "sigterm-2s"],
)
def test_a_signal_at_any_moment_from_process_start_stops_the_run(
    tmp_path: Path, after_s: float, signum: signal.Signals, code: int
) -> None:
    """While the engine, openai and tau2 are imported, tasks are planned or episodes run."""
    events = tmp_path / "E.jsonl"
    proc = subprocess.Popen(
        [*ENTRYPOINT, "run", "--domain", "telecom", "--n-samples", "2", "--concurrency", "48",
         "--latency-ms", "250", "--events", str(events)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(after_s)  # when the signal comes, not a timing assert
    sent_at = datetime.now(UTC)
    sent = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 20
    assert proc.returncode == code, err
    assert "Traceback" not in err
    written = list(read_events(events)) if events.exists() else []
    assert_event_invariants(written)
    runs = [e["event"] for e in written if e["event"] in ("run_start", "run_end")]
    assert runs in ([], ["run_start", "run_end"])
    assert sum(e["event"] == "episode_start" for e in written) < 228
    late = [
        e for e in written
        if e["event"] == "episode_start"
        and datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")) > sent_at + LOOP_REACTION
    ]
    assert not late, f"{len(late)} episodes started after the signal"


START_UP_THAT_WRAPS = """
import os, signal, sys, time
from engine import cli, interrupts

def planning(args):
    try:  # like C code calling back into Python: whatever it raises becomes its own error
        if {signal_arrives}:
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        raise LookupError("a real start-up failure")
    except BaseException as exc:
        raise RuntimeError("schema build failed: " + repr(exc)) from None

interrupts.install()
cli.cmd_tasks = planning
sys.exit(cli.main(["tasks", "--domain", "mock"]))
"""


@pytest.mark.parametrize("signal_arrives", [True, False], ids=["signal", "no-signal"])
def test_a_signal_wrapped_into_another_error_during_start_up_still_exits_as_the_signal(
    signal_arrives: bool,
) -> None:
    """litellm's import under tau2 once turned Ctrl-C into pydantic-core's SchemaError (exit 1)."""
    proc = subprocess.run(
        [sys.executable, "-c", START_UP_THAT_WRAPS.format(signal_arrives=signal_arrives)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if signal_arrives:
        assert proc.returncode == 130, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "interrupted (during start-up, as RuntimeError)" in proc.stderr
    else:  # an error with no signal under it is not taken for one
        assert proc.returncode == 1
        assert "RuntimeError: schema build failed: LookupError" in proc.stderr


def test_second_sigint_exits_at_once_leaving_whole_lines(tmp_path: Path) -> None:
    events = tmp_path / "E.jsonl"
    proc = _start(
        "run", "--domain", "telecom", "--concurrency", "64", "--latency-ms", "2000", "--events", str(events)
    )
    _wait_for_event(events, "episode_start", proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    for line in events.read_bytes().splitlines():
        assert line.startswith(b"{") and line.endswith(b"}")


def test_timeout_with_slow_model_ends_every_episode_timeout_and_exits_zero(tmp_path: Path) -> None:
    events = tmp_path / "E.jsonl"
    proc = subprocess.run(
        [
            *CLI,
            "run",
            "--domain",
            "telecom",
            "--timeout",
            "0.5",
            "--latency-ms",
            "400",
            "--concurrency",
            "128",
            "--events",
            str(events),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    ends = [e for e in read_events(events) if e["event"] == "episode_end"]
    assert (
        len(ends) == 114
        and {e["status"] for e in ends} == {"timeout"}
        and {e["reward"] for e in ends} == {0.0}
    )


def test_resume_without_events_path_is_a_usage_error() -> None:
    proc = subprocess.run([*CLI, "run", "--resume"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2 and "--resume needs --events PATH" in proc.stderr


def test_resume_reads_a_file_truncated_mid_line(tmp_path: Path) -> None:
    events = tmp_path / "E.jsonl"
    args = ["run", "--domain", "mock", "--events", str(events)]
    assert subprocess.run([*CLI, *args], capture_output=True, timeout=120).returncode == 0
    lines = events.read_bytes().splitlines(keepends=True)
    last_end = max(i for i, line in enumerate(lines) if b'"event":"episode_end"' in line)
    # the writer died in the middle of the last episode_end
    events.write_bytes(b"".join(lines[:last_end]) + lines[last_end][: len(lines[last_end]) // 2])
    proc = subprocess.run([*CLI, *args, "--resume"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "resume: 8 of 9 episodes already done" in proc.stdout
    records = list(read_events(events))
    done = collections.Counter(e["task_id"] for e in records if e["event"] == "episode_end")
    assert len(done) == 9 and set(done.values()) == {1}


def test_process_keeps_no_children_after_cancel(tmp_path: Path) -> None:
    events = tmp_path / "E.jsonl"
    proc = _start(
        "run", "--domain", "telecom", "--limit", "8", "--latency-ms", "1000", "--events", str(events)
    )
    _wait_for_event(events, "episode_start", proc)
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert_event_invariants(list(read_events(events)))
