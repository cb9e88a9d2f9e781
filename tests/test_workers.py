"""`tau2-engine run --workers N`: one run over N processes, one events file, one summary
(real subprocesses, real signals)."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import catalog
from engine.config import EngineConfig, EpisodeSpec
from engine.events import read_events
from engine.workers import deal, worker_config
from tests.helpers import assert_event_invariants

CLI = [sys.executable, "-m", "engine.cli"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_gone(pids: list[int], limit_s: float = 30) -> list[int]:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _wait_for_starts(path: Path, count: int, proc: subprocess.Popen[str], limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.exists() and path.read_bytes().count(b'"event":"episode_start"') >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} episode_start events within {limit_s}s")


@pytest.mark.parametrize("workers", [1, 2, 3, 7], ids=["w1", "w2", "w3", "w7"])
def test_deal_gives_every_episode_to_exactly_one_worker(workers: int) -> None:
    specs = [EpisodeSpec(domain="mock", task_id=f"t{i}", sample=i % 3) for i in range(20)]
    shares = deal(specs, workers)
    assert len(shares) == workers
    dealt = [s for share in shares for s in share]
    assert sorted(dealt, key=lambda s: s.task_id) == sorted(specs, key=lambda s: s.task_id)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_worker_config_shares_the_runs_limits() -> None:
    config = EngineConfig(concurrency=33, max_envs=10, max_model_calls=None, cpu_workers=2, run_id="r")
    share = worker_config(config, 2)
    assert (share.concurrency, share.max_envs, share.max_model_calls, share.cpu_workers) == (17, 5, None, 1)
    assert share.run_id == "r"


def test_two_workers_run_every_episode_exactly_once_into_one_events_file(tmp_path: Path) -> None:
    events_path = tmp_path / "E.jsonl"
    proc = subprocess.run(
        [*CLI, "run", "--domain", "telecom", "--limit", "5", "--n-samples", "3", "--workers", "2",
         "--events", str(events_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    events = list(read_events(events_path))
    assert_event_invariants(events)
    names = [e["event"] for e in events]
    assert names.count("run_start") == 1 and names[0] == "run_start"
    assert names.count("run_end") == 1 and names[-1] == "run_end"
    start, end = events[0], events[-1]
    assert start["workers"] == 2 and len(set(start["worker_pids"])) == 2
    assert start["event_loop"] == "uvloop"
    assert {e["run_id"] for e in events} == {start["run_id"]}
    tasks = catalog.task_set("telecom", None).ids[:5]
    ended = collections.Counter((e["task_id"], e["sample"]) for e in events if e["event"] == "episode_end")
    assert ended == {(t, s): 1 for t in tasks for s in range(3)}
    assert end["episodes"] == 15 and end["mean_reward"] == 1.0 and end["interrupted"] is False
    assert sorted(w["pid"] for w in end["workers"]) == sorted(start["worker_pids"])
    assert sorted(w["episodes"] for w in end["workers"]) == [7, 8]
    by_episode: dict[str, list[str]] = collections.defaultdict(list)
    for e in events[1:-1]:
        by_episode[e["episode_id"]].append(e["event"])
    for sequence in by_episode.values():  # a worker's events of one episode stay in order
        assert sequence[0] == "episode_start" and sequence[-1] == "episode_end"
    assert "episodes" in proc.stdout and "15" in proc.stdout


def test_sigint_cancels_every_workers_episodes_and_cleans_up_workers(tmp_path: Path) -> None:
    events_path = tmp_path / "E.jsonl"
    proc = subprocess.Popen(
        [*CLI, "run", "--domain", "telecom", "--limit", "10", "--n-samples", "2", "--workers", "2",
         "--concurrency", "8", "--latency-ms", "5000", "--events", str(events_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_for_starts(events_path, 8, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    events = list(read_events(events_path))
    assert_event_invariants(events)
    assert [e["event"] for e in events].count("run_end") == 1
    end = events[-1]
    assert end["event"] == "run_end" and end["interrupted"] is True
    statuses = collections.Counter(e["status"] for e in events if e["event"] == "episode_end")
    assert statuses["cancelled"] > 0 and set(statuses) <= {"completed", "cancelled"}
    assert len(end["workers"]) == 2  # both workers reported before exiting
    assert _wait_gone(events[0]["worker_pids"]) == []


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    events_path = tmp_path / "E.jsonl"
    proc = subprocess.Popen(
        [*CLI, "run", "--domain", "telecom", "--limit", "4", "--workers", "2", "--concurrency", "4",
         "--latency-ms", "20000", "--events", str(events_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    _wait_for_starts(events_path, 4, proc)
    pids = next(read_events(events_path))["worker_pids"]
    proc.kill()
    proc.communicate(timeout=30)
    assert _wait_gone(pids) == []
