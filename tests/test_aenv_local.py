"""The aenv-local backend: a pool of real `serve-env` servers on loopback, forked from one
zygote."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest

from engine.config import plan_episodes
from tests.aenv_helpers import CLI, wait_until_gone, zygote_and_servers
from tests.helpers import Compass, assert_event_invariants, by_episode, run_specs


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip().endswith("}")]


def addresses_of(events: list[dict[str, Any]]) -> set[str]:
    return {e["address"] for e in events if e["event"] == "env_acquire"}


def gone(process: psutil.Process) -> bool:
    """Exited (an orphan's zombie waits on pid 1, which may reap it late)."""
    with contextlib.suppress(psutil.Error):
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    return True


def start_run(events: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "run", "--backend", "aenv-local", "--events", str(events), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(events: Path, proc: subprocess.Popen[str], name: str, count: int) -> None:
    deadline = time.monotonic() + 120
    while sum(e["event"] == name for e in read_events(events)) < count:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no {count} {name} events"
        time.sleep(0.05)


def test_cli_telecom_sixteen_episodes_all_complete_at_reward_one(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    proc = start_run(events, "--domain", "telecom", "--limit", "16", "--concurrency", "4")
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    records = read_events(events)
    assert_event_invariants(records)
    ends = [e for e in records if e["event"] == "episode_end"]
    assert len(ends) == 16
    assert {(e["status"], e["reward"]) for e in ends} == {("completed", 1.0)}
    acquires = [e for e in records if e["event"] == "env_acquire"]
    assert len(acquires) == 16 and all(e["latency_s"] >= 0 for e in acquires)
    assert len(addresses_of(records)) <= 4  # the pool: servers are reused across episodes
    assert sum(e["event"] == "env_release" for e in records) == 16
    assert {e["name"] for e in records if e["event"] == "tool_call"}.isdisjoint(
        {n for n in (e.get("name", "") for e in records) if "/" in n}
    )
    wait_until_gone(proc.pid, addresses_of(records))


@pytest.mark.anyio
async def test_retail_non_solo_through_send_message_matches_local_backend() -> None:
    specs = plan_episodes(domain="retail", limit=3, solo_mode=False)
    local, local_sink = await run_specs(specs, concurrency=1)
    aenv, aenv_sink = await run_specs(specs, concurrency=1, backend="aenv-local")
    assert aenv.statuses == local.statuses == Counter({"completed": 3})
    assert_event_invariants(aenv_sink.events)

    def trajectory(sink: Any) -> dict[str, list[tuple[Any, ...]]]:
        out = {}
        for episode in by_episode(sink.events).values():
            steps = [
                (e["event"], e.get("role"), e.get("content"), e.get("name"), e.get("result"), e.get("error"))
                for e in episode
                if e["event"] in ("turn", "tool_call")
            ]
            reward = next(e["reward"] for e in episode if e["event"] == "reward")
            out[episode[0]["task_id"]] = [*steps, ("reward", reward)]
        return out

    assert trajectory(aenv_sink) == trajectory(local_sink)
    assert any(e["role"] == "user" for e in aenv_sink.named("turn"))
    assert [e["reward"] for e in aenv_sink.named("reward")] == [1.0, 1.0, 1.0]
    wait_until_gone(os.getpid(), addresses_of(aenv_sink.events))


def test_killed_server_mid_run_is_retried_and_nothing_survives(tmp_path: Path, compass: Compass) -> None:
    events = tmp_path / "events.jsonl"
    proc = start_run(
        events, "--domain", "telecom", "--limit", "8", "--concurrency", "2", "--latency-ms", "40"
    )
    wait_for(events, proc, "tool_call", 3)
    _, victims = zygote_and_servers(proc.pid)
    assert victims
    os.kill(victims[0].pid, signal.SIGKILL)  # kill -9, mid-episode
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    records = read_events(events)
    assert_event_invariants(records)
    retries = [e for e in records if e["event"] == "retry" and e["scope"] == "episode"]
    assert len(retries) >= 1 and retries[0]["error_type"] == "EnvError"
    final = {(e["task_id"], e["sample"]): e for e in records if e["event"] == "episode_end"}
    assert len(final) == 8  # the last attempt of each episode
    completed = [e for e in final.values() if e["status"] == "completed"]
    assert len(completed) >= 7
    assert all(e["reward"] == 1.0 for e in completed)
    wait_until_gone(proc.pid, addresses_of(records))
    compass.record("aenv server killed (kill -9) mid-run", 1, 8 - len(final))


def test_servers_are_forked_from_one_zygote_that_is_gone_after_the_run(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    proc = start_run(
        events, "--domain", "telecom", "--limit", "6", "--concurrency", "3", "--latency-ms", "40"
    )
    wait_for(events, proc, "env_acquire", 3)
    zygotes, servers = zygote_and_servers(proc.pid)
    assert len(zygotes) == 1 and "engine.envs.aenv_zygote" in zygotes[0].cmdline()
    assert len(servers) == 3
    for server in servers:
        assert server.ppid() == zygotes[0].pid
        assert os.getpgid(server.pid) == server.pid  # its own group: stopped as one
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    wait_until_gone(proc.pid, addresses_of(read_events(events)))
    assert not zygotes[0].is_running()  # reaped by the engine


def test_killed_zygote_mid_run_is_replaced_and_nothing_survives(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    proc = start_run(
        events, "--domain", "telecom", "--limit", "6", "--concurrency", "2", "--latency-ms", "40"
    )
    wait_for(events, proc, "tool_call", 3)
    (zygote,), servers = zygote_and_servers(proc.pid)
    os.kill(zygote.pid, signal.SIGKILL)  # its servers follow it (their parent watch)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    records = read_events(events)
    assert_event_invariants(records)
    final = {(e["task_id"], e["sample"]): e for e in records if e["event"] == "episode_end"}
    assert len(final) == 6
    assert sum(e["status"] == "completed" for e in final.values()) >= 5
    wait_until_gone(proc.pid, addresses_of(records))
    assert all(gone(p) for p in [zygote, *servers])


def test_ctrl_c_stops_every_server_and_ends_every_episode(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    proc = start_run(
        events, "--domain", "telecom", "--limit", "4", "--concurrency", "1", "--latency-ms", "40"
    )
    wait_for(events, proc, "tool_call", 2)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    records = read_events(events)
    assert_event_invariants(records)
    assert records[-1]["event"] == "run_end" and records[-1]["interrupted"] is True
    wait_until_gone(proc.pid, addresses_of(records))


def test_killed_engine_leaves_no_zygote_or_server(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    proc = start_run(
        events, "--domain", "telecom", "--limit", "6", "--concurrency", "2", "--latency-ms", "40"
    )
    wait_for(events, proc, "tool_call", 3)
    zygotes, servers = zygote_and_servers(proc.pid)
    assert zygotes and servers
    proc.kill()  # no aclose, no atexit: only the parent watches are left
    proc.communicate(timeout=60)
    wait_until_gone(proc.pid, addresses_of(read_events(events)))
    # Orphans no longer descend from the engine: wait for them by pid (parent watches poll).
    deadline = time.monotonic() + 30
    while not all(gone(p) for p in [*zygotes, *servers]):
        assert time.monotonic() < deadline, [p for p in [*zygotes, *servers] if not gone(p)]
        time.sleep(0.1)

