"""Overhead of `aenv-local` (real aenv servers over MCP/HTTP) against `local` (in-process
tau2), side by side in one run: the same oracle episodes, one at a time, on a warm pool.

Prints JSON lines: per-episode time, per-tool-call latency, environment acquire latency,
each with its aenv-local / local ratio, the pool's cold start (one server), and the cold
start of a pool of `--pool` servers (that many first episodes at once).

    /work/venv/bin/python benchmarks/bench_aenv.py [--domain telecom] [--episodes 16] [--pool 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import anyio

from engine.config import EngineConfig, EpisodeSpec, plan_episodes
from engine.engine import Engine
from engine.events import EventLog, MemorySink


async def measure(backend: str, specs: list[EpisodeSpec]) -> dict[str, Any]:
    sink = MemorySink()
    config = EngineConfig(concurrency=1, backend=backend)
    engine = Engine(config, EventLog(config.run_id, [sink]))
    try:
        started = time.perf_counter()
        await engine.run_one(specs[0])  # warm-up: starts the pool's server, loads the domain
        cold_s = time.perf_counter() - started
        sink.events.clear()
        results = [await engine.run_one(spec) for spec in specs]
    finally:
        await engine.aclose()
    assert all(r.status == "completed" for r in results), [r.error for r in results]
    tools = [e["latency_s"] for e in sink.named("tool_call") if not e.get("history")]
    acquire = [e["latency_s"] for e in sink.named("env_acquire")]
    return {
        "cold_start_s": cold_s,
        "episode_s": statistics.mean(r.duration_s for r in results),
        "tool_call_s": statistics.mean(tools),
        "tool_calls": len(tools),
        "env_acquire_s": statistics.mean(acquire) if acquire else None,
    }


async def pool_cold_start(specs: list[EpisodeSpec], size: int) -> float:
    """Seconds until `size` episodes started together on a cold pool have all ended."""
    config = EngineConfig(concurrency=size, backend="aenv-local")
    engine = Engine(config, EventLog(config.run_id, [MemorySink()]))
    try:
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for spec in specs[:size]:
                tg.start_soon(engine.run_one, spec)
        return time.perf_counter() - started
    finally:
        await engine.aclose()


async def main(domain: str, episodes: int, pool: int) -> None:
    specs = plan_episodes(domain=domain, limit=episodes)
    local = await measure("local", specs)
    aenv = await measure("aenv-local", specs)
    for metric in ("episode_s", "tool_call_s", "cold_start_s"):
        print(json.dumps({"metric": metric, "domain": domain, "episodes": len(specs),
                          "local": round(local[metric], 6), "aenv_local": round(aenv[metric], 6),
                          "ratio": round(aenv[metric] / local[metric], 2)}))
    per_episode_overhead = aenv["episode_s"] - local["episode_s"]
    per_call_overhead = aenv["tool_call_s"] - local["tool_call_s"]
    print(json.dumps({"metric": "overhead", "episode_s": round(per_episode_overhead, 6),
                      "tool_call_s": round(per_call_overhead, 6),
                      "env_acquire_s": round(aenv["env_acquire_s"], 6),
                      "tool_calls_per_episode": aenv["tool_calls"] / len(specs)}))
    if pool > 0:
        pool_specs = plan_episodes(domain=domain, limit=pool)
        print(json.dumps({"metric": "pool_cold_start_s", "domain": domain, "pool": len(pool_specs),
                          "aenv_local": round(await pool_cold_start(pool_specs, pool), 6)}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domain", default="telecom")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--pool", type=int, default=4, help="0: skip the pool cold start")
    args = parser.parse_args()
    anyio.run(main, args.domain, args.episodes, args.pool)
