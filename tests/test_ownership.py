"""Who owns what: the engine closes the pools it owns, a caller's HTTP client stays the
caller's, using the library changes nothing process-wide, and an episode's deadline counts
its own work, not time queued for a shared slot."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from engine.clients import SHARD_CONNECTIONS, ClientPool
from engine.config import Endpoint, EngineConfig, EpisodeSpec, PolicyConfig
from engine.engine import Engine
from engine.events import EventLog, MemorySink
from engine.results import Status

ROOT = Path(__file__).resolve().parents[1]
@pytest.mark.anyio
async def test_a_callers_http_client_is_used_and_never_closed_by_the_pool() -> None:
    pool = ClientPool(4)
    endpoint = Endpoint(base_url="http://127.0.0.1:9/v1", api_key="k")
    async with httpx.AsyncClient() as theirs:
        client = pool.client(endpoint, theirs)
        assert client._client is theirs
        assert pool.client(endpoint, theirs) is client  # cached by endpoint and key
        ours = pool.client(endpoint)
        assert ours is not client and ours._client is not theirs
        await pool.aclose()
        assert not theirs.is_closed and ours._client.is_closed


def test_clients_are_cached_by_endpoint_and_key_with_a_bound() -> None:
    pool = ClientPool(4, max_clients=2)
    a = pool.client(Endpoint(base_url="http://127.0.0.1:9/v1", api_key="a"))
    b = pool.client(Endpoint(base_url="http://127.0.0.1:9/v1", api_key="b"))
    assert pool.client(Endpoint(base_url="http://127.0.0.1:9/v1", api_key="a")) is a
    pool.client(Endpoint(base_url="http://127.0.0.1:9/v1", api_key="c"))  # evicts b, the least recent
    assert pool.client(Endpoint(base_url="http://127.0.0.1:9/v1", api_key="a")) is a
    assert pool.client(Endpoint(base_url="http://127.0.0.1:9/v1", api_key="b")) is not b


@pytest.mark.anyio
async def test_a_large_pool_hands_out_its_http_clients_in_turn_and_closes_them_all() -> None:
    pool = ClientPool(200)  # 4 HTTP clients of up to SHARD_CONNECTIONS connections each
    assert pool.shards == -(-200 // SHARD_CONNECTIONS) == 4
    endpoint = Endpoint(base_url="http://127.0.0.1:9/v1", api_key="k")
    clients = [pool.client(endpoint) for _ in range(8)]
    https = [c._client for c in clients]
    assert len(set(map(id, https[:4]))) == 4 and https[4:] == https[:4]
    assert clients[4:] == clients[:4]  # cached per HTTP client and endpoint
    assert pool.http_clients == https[:4]
    await pool.aclose()
    assert all(h.is_closed for h in https[:4]) and pool.http_clients == []


PROBE = r"""
import asyncio, gc, json, logging, signal, sys
from loguru import logger
seen = []
mine = logger.add(lambda message: seen.append(message.record["message"]), level="DEBUG")
before = {
    "stdout": id(sys.stdout), "stderr": id(sys.stderr), "freeze": gc.get_freeze_count(),
    "sigint": repr(signal.getsignal(signal.SIGINT)), "sigterm": repr(signal.getsignal(signal.SIGTERM)),
    "root_handlers": len(logging.getLogger().handlers), "gc_enabled": gc.isenabled(),
    "gc_threshold": gc.get_threshold(), "loop_policy": type(asyncio.get_event_loop_policy()).__name__,
}
import engine
from engine import catalog

async def main():
    task_id = catalog.task_set("airline", None, None).ids[0]
    return await engine.run_agent_return_reward({"domain": "airline", "task_id": task_id})

reward = asyncio.run(main())
after = {
    "stdout": id(sys.stdout), "stderr": id(sys.stderr), "freeze": gc.get_freeze_count(),
    "sigint": repr(signal.getsignal(signal.SIGINT)), "sigterm": repr(signal.getsignal(signal.SIGTERM)),
    "root_handlers": len(logging.getLogger().handlers), "gc_enabled": gc.isenabled(),
    "gc_threshold": gc.get_threshold(), "loop_policy": type(asyncio.get_event_loop_policy()).__name__,
}
logger.info("still mine")
print(json.dumps({"before": before, "after": after, "reward": reward, "mine_kept": "still mine" in seen}))
"""


def test_using_the_library_changes_nothing_process_wide() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["reward"] == 1.0
    assert report["after"] == report["before"]
    assert report["mine_kept"]  # the process's own loguru handler was left in place
    assert "tau2" not in done.stderr  # tau2's per-call DEBUG records are off, not printed


OWNER = r"""
import asyncio, gc, json
from engine.process import COLLECTOR_THRESHOLDS, own_process, run_loop
default = gc.get_threshold()
own_process()

async def loop_module():
    return type(asyncio.get_running_loop()).__module__

print(json.dumps({"default": default, "owned": gc.get_threshold(), "expected": COLLECTOR_THRESHOLDS,
                  "loop": run_loop(loop_module), "policy": type(asyncio.get_event_loop_policy()).__module__}))
"""


def test_a_program_owning_its_process_tunes_the_collector_and_runs_uvloop() -> None:
    done = subprocess.run(
        [sys.executable, "-c", OWNER], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["default"] != report["owned"] == report["expected"]
    assert report["loop"].startswith("uvloop")
    assert report["policy"].startswith("asyncio")  # only the new loop: no event loop policy installed


def oracle_spec(task_id: str, *, timeout_s: float) -> EpisodeSpec:
    return EpisodeSpec(
        domain="mock",
        task_id=task_id,
        solo_mode=True,
        policy=PolicyConfig(name="oracle", latency_ms=300.0),
        timeout_s=timeout_s,
    )


@pytest.mark.anyio
@pytest.mark.parametrize("slot", ["max_envs", "max_model_calls"])
async def test_the_deadline_counts_the_episodes_own_work_not_its_wait_for_a_slot(slot: str) -> None:
    from engine import catalog

    task_id = next(t.id for t in catalog.task_set("mock", None, None).tasks if t.ticket)
    sink = MemorySink()
    config = EngineConfig(concurrency=2, **{slot: 1})
    async with Engine(config, EventLog(config.run_id, [sink])) as engine:
        probe = await engine.run([oracle_spec(task_id, timeout_s=60.0)])
        work_s = probe.results[0].duration_s
        # two at once on one slot: the second waits about one episode's work; a deadline of
        # 1.6x the work passes only if the wait counted
        deadline = oracle_spec(task_id, timeout_s=1.6 * work_s)
        summary = await engine.run([deadline, dataclasses.replace(deadline, sample=1)])
    statuses = sorted(r.status for r in summary.results)
    waits = sorted(r.queue_wait_s for r in summary.results)
    assert statuses == [Status.COMPLETED, Status.COMPLETED], (work_s, waits)
    assert waits[1] >= 0.5 * work_s
    ends = [e for e in sink.events if e["event"] == "episode_end"]
    assert all("queue_wait_s" in e for e in ends)
