"""Engine overhead per model call against a local zero-latency OpenAI-compatible endpoint.

Runs telecom solo episodes with the `openai` policy against the test suite's fake server
(gold actions, no injected latency), records every request the engine sent, then replays
the very same request bodies with a bare `AsyncOpenAI` client at the same concurrency.
Side by side, per model call:

- `raw_ms`: bare client round trip (`AsyncOpenAI.post` of the recorded body, parsed into a
  `ChatCompletion`: HTTP + JSON, the floor any client pays);
- `turn_ms`: the engine's `turn.latency_s` (Agents SDK request building and parsing);
- `episode_ms`: episode wall time / model calls (everything: SDK runner, tools, events,
  environment setup and scoring amortised);
- `overhead_ms` = episode_ms - raw_ms, and the ratio episode_ms / raw_ms;
- `cpu_ms` / `raw_cpu_ms`: this process's CPU time per model call, engine run / bare client
  replay; `overhead_cpu_ms` their difference (with the endpoint in its own process: the
  engine's own work per model call, whether or not the endpoint is the bottleneck).

The endpoint runs in a process of its own (`endpoint_process.py`; `--endpoint thread`: a
uvicorn thread of this process, as before), and this process is set up as the CLI sets up its
own (`engine.process`: uvloop, the tuned collector).

Usage: python benchmarks/bench_model_overhead.py [--episodes N] [--concurrency C ...]
Prints one JSON line per concurrency level.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio  # noqa: E402
import httpx  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402
from openai.types.chat import ChatCompletion  # noqa: E402

from engine import tau2lib  # noqa: E402
from engine.config import Endpoint, EngineConfig, EpisodeSpec, PolicyConfig  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.events import EventLog, MemorySink  # noqa: E402
from engine.process import event_loop_name, own_process, run_loop  # noqa: E402
from tests.fake_openai_server import FakeOpenAI, distinct_ticket_tasks, gold_agent  # noqa: E402


async def engine_run(specs: list[EpisodeSpec], concurrency: int) -> tuple[float, MemorySink]:
    sink = MemorySink()
    config = EngineConfig(concurrency=concurrency)
    engine = Engine(config, EventLog(config.run_id, [sink]))
    started = time.perf_counter()
    try:
        summary = await engine.run(specs)
    finally:
        await engine.aclose()
    assert summary.mean_reward == 1.0, summary.as_dict()
    return time.perf_counter() - started, sink


async def raw_replay(base_url: str, bodies: list[dict[str, Any]], concurrency: int) -> float:
    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(body: dict[str, Any]) -> None:
        async with limiter:
            await client.post("/chat/completions", body=body, cast_to=ChatCompletion)

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for body in bodies:
            tg.start_soon(one, body)
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


ENDPOINTS = {"process": "tests.fake_openai_server in a process of its own (benchmarks/endpoint_process.py)",
             "thread": "tests.fake_openai_server (uvicorn thread, this process)"}


@contextlib.contextmanager
def endpoint_process() -> Iterator[tuple[str, Any]]:
    """The endpoint in its own process: its base URL and a function answering (and forgetting)
    the request bodies it has received."""
    script = Path(__file__).with_name("endpoint_process.py")
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        root = base_url.removesuffix("/v1")
        for _ in range(200):  # until it accepts connections
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"{root}/recorded", timeout=1)
                break
            time.sleep(0.05)

        def recorded() -> list[dict[str, Any]]:
            bodies: list[dict[str, Any]] = httpx.get(f"{root}/recorded", timeout=60).json()
            return bodies

        yield base_url, recorded
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)


@contextlib.contextmanager
def endpoint_thread() -> Iterator[tuple[str, Any]]:
    server = FakeOpenAI(gold_agent(distinct_ticket_tasks("telecom"), solo_mode=True))
    with server.running():
        def recorded() -> list[dict[str, Any]]:
            bodies = [dict(r.body) for r in server.requests]
            server.requests.clear()
            return bodies

        yield server.base_url, recorded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--endpoint", choices=ENDPOINTS, default="process")
    args = parser.parse_args()
    own_process()  # a benchmark owns its process, as the CLI does
    tau2lib.load()
    tasks = distinct_ticket_tasks("telecom")
    with (endpoint_process() if args.endpoint == "process" else endpoint_thread()) as (base_url, recorded):
        endpoint = Endpoint(base_url=base_url, api_key="bench", model="bench")
        specs = [
            EpisodeSpec(domain="telecom", task_id=tasks[i % len(tasks)].id, sample=i,
                        solo_mode=True, policy=PolicyConfig(name="openai", endpoint=endpoint))
            for i in range(args.episodes)
        ]
        run_loop(engine_run, specs[: len(tasks)], 4)  # warm-up: imports, caches, pools
        for concurrency in args.concurrency:
            recorded()
            cpu_started = time.process_time()
            wall, sink = run_loop(engine_run, specs, concurrency)
            cpu = time.process_time() - cpu_started
            bodies = recorded()
            calls = len(bodies)
            cpu_started = time.process_time()
            raw = run_loop(raw_replay, base_url, bodies, concurrency)
            raw_cpu = time.process_time() - cpu_started
            recorded()
            turns = [e["latency_s"] for e in sink.named("turn")]
            raw_ms = raw / calls * 1000
            episode_ms = wall / calls * 1000
            print(json.dumps({
                "bench": "model_overhead",
                "setup": {"domain": "telecom", "solo_mode": True, "policy": "openai",
                          "endpoint": ENDPOINTS[args.endpoint], "event_loop": event_loop_name(),
                          "episodes": args.episodes, "concurrency": concurrency, "latency_ms": 0},
                "episodes": args.episodes,
                "concurrency": concurrency,
                "model_calls": calls,
                "raw_ms": round(raw_ms, 3),
                "turn_ms": round(sum(turns) / len(turns) * 1000, 3),
                "episode_ms": round(episode_ms, 3),
                "overhead_ms": round(episode_ms - raw_ms, 3),
                "ratio": round(episode_ms / raw_ms, 2),
                "cpu_ms": round(cpu / calls * 1000, 3),
                "raw_cpu_ms": round(raw_cpu / calls * 1000, 3),
                "overhead_cpu_ms": (round((cpu - raw_cpu) / calls * 1000, 3)
                                    if args.endpoint == "process" else None),
                "calls_per_s": round(calls / wall, 1),
                "raw_calls_per_s": round(calls / raw, 1),
                "date": datetime.datetime.now().isoformat(timespec="minutes"),
                "load_avg_1m": round(os.getloadavg()[0], 2),
            }), flush=True)


if __name__ == "__main__":
    main()
