from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.events import read_events
from tests.helpers import assert_event_invariants

CLI = [sys.executable, "-m", "engine.cli"]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def test_full_telecom_run_two_samples_all_complete(tmp_path: Path) -> None:
    events = tmp_path / "E.jsonl"
    proc = run_cli(
        "run", "--domain", "telecom", "--n-samples", "2", "--concurrency", "32", "--events", str(events)
    )
    assert proc.returncode == 0, proc.stderr
    assert "running the oracle policy" in proc.stdout
    assert "episodes" in proc.stdout and "228" in proc.stdout and "pass^2" in proc.stdout
    records = list(read_events(events))
    assert_event_invariants(records)
    ends = [e for e in records if e["event"] == "episode_end"]
    assert len(ends) == 228
    assert {e["status"] for e in ends} == {"completed"} and {e["reward"] for e in ends} == {1.0}
    [start] = [e for e in records if e["event"] == "run_start"]
    assert start["event_loop"] == "uvloop"  # the CLI's loop (engine.process.run_loop)


def test_tasks_lists_ids() -> None:
    proc = run_cli("tasks", "--domain", "airline")
    assert proc.returncode == 0
    assert proc.stdout.split() == [str(i) for i in range(50)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "--domain", "nope"],
            "unknown domain 'nope'; expected one of airline, mock, retail, telecom",
        ),
        (["run", "--concurrency", "0"], "--concurrency must be >= 1, got 0"),
        (["run", "--task-id", "no-such-task"], "unknown task_id 'no-such-task'"),
        (["run", "--n-samples", "-1"], "--n-samples must be >= 1, got -1"),
        (["run", "--policy", "gpt"], "unknown policy 'gpt'; expected one of noisy-oracle, openai, oracle"),
        (["run", "--backend", "k8s"], "unknown backend 'k8s'"),
        (["run", "--temperature", "hot"], "--temperature must be a number"),
        (["run", "--limit", "3", "--events", "/proc/nope/e.jsonl"], "cannot write events file"),
        (["tasks", "--domain", "x"], "unknown domain 'x'"),
    ],
    ids=[
        "domain",
        "concurrency",
        "task-id",
        "n-samples",
        "policy",
        "backend",
        "temperature",
        "events-path",
        "tasks-domain",
    ],
)
def test_bad_input_gets_one_clear_line_and_exit_2(args: list[str], message: str) -> None:
    proc = run_cli(*args, timeout=240)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_tasks_into_a_pipe_closed_early_ends_quietly() -> None:
    """`tau2-engine tasks | head`: the reader is gone before the ids are written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([*CLI, "tasks", "--domain", "airline"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 0 and proc.stderr == ""


def test_analyze_help_is_help() -> None:
    proc = run_cli("analyze", "-h")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: tau2-engine analyze") and "--html" in proc.stdout
