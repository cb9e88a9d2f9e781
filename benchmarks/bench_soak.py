"""Soak: many telecom episodes through one Engine at high concurrency; memory must stay
flat after warm-up. Prints the resident-set curve and one JSON line.

    python benchmarks/bench_soak.py [--episodes 20000] [--concurrency 1000] [--latency-ms 20]

Every episode is the oracle on a telecom task (solo mode, as tau2 runs telecom's ticket
tasks offline), its events written to a real JSONL file. The current RSS (not the peak) is
read from /proc every `--every` finished episodes. `growth_mb_per_1000` is the least-squares
slope of RSS over episodes after the warm-up (the first `--warmup` episodes: domain parsing,
templates, gold replays, the event writer's buffers). The run summary still holds one small
record per episode (pass^k needs it), so a small slope remains by design.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


from engine import catalog
from engine.config import EngineConfig, EpisodeSpec, PolicyConfig
from engine.engine import Engine
from engine.events import EventLog, JsonlFileSink
from engine.process import event_loop_name, own_process, run_loop
from engine.results import EpisodeResult

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE / 2**20


def slope_per_1000(points: list[tuple[int, float]]) -> float:
    n = len(points)
    if n < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    cov = sum((x - mean_x) * (y - mean_y) for x, y in points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return 1000.0 * cov / var if var else 0.0


def specs(n: int, latency_ms: float) -> list[EpisodeSpec]:
    tasks = [t for t in catalog.task_set("telecom").tasks if t.ticket]
    policy = PolicyConfig(name="oracle", latency_ms=latency_ms)
    return [
        EpisodeSpec(domain="telecom", task_id=tasks[i % len(tasks)].id, sample=i // len(tasks),
                    solo_mode=True, policy=policy)
        for i in range(n)
    ]


async def soak(args: argparse.Namespace, events_path: Path) -> dict[str, Any]:
    curve: list[tuple[int, float]] = [(0, rss_mb())]
    finished = 0

    def on_result(_: EpisodeResult) -> None:
        nonlocal finished
        finished += 1
        if finished % args.every == 0:
            curve.append((finished, rss_mb()))
            print(f"soak: {finished:>6} episodes  rss {curve[-1][1]:8.1f} MB", file=sys.stderr, flush=True)

    config = EngineConfig(concurrency=args.concurrency, run_id="soak")
    events = EventLog(config.run_id, [JsonlFileSink(events_path, append=False)])
    started = time.perf_counter()
    cpu_started = time.process_time()
    async with Engine(config, events) as engine:
        summary = await engine.run(specs(args.episodes, args.latency_ms), on_result)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    report = events.close()
    after = [(x, y) for x, y in curve if x >= args.warmup]
    return {
        "episodes": summary.episodes,
        "statuses": dict(summary.statuses),
        "mean_reward": summary.mean_reward,
        "wall_s": round(wall, 1),
        "episodes_per_s": round(summary.episodes / wall, 1),
        "cpu_ms_per_episode": round(1000 * cpu / summary.episodes, 2),
        "rss_curve_mb": [[x, round(y, 1)] for x, y in curve],
        "rss_after_warmup_mb": [round(after[0][1], 1), round(after[-1][1], 1)] if after else None,
        "growth_mb_per_1000": round(slope_per_1000(after), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "event_writer": None if report is None else dataclasses.asdict(report),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=4000)
    args = parser.parse_args()
    own_process()  # a benchmark owns its process, as the CLI does
    setup = {"domain": "telecom", "policy": "oracle", "solo_mode": True, "episodes": args.episodes,
             "concurrency": args.concurrency, "latency_ms": args.latency_ms, "warmup": args.warmup,
             "event_loop": event_loop_name(), "gc_threshold": gc.get_threshold()}
    print("soak setup:", json.dumps(setup), file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        events_path = Path(tmp) / "soak.jsonl"
        fields = run_loop(soak, args, events_path)
        fields["events_bytes"] = events_path.stat().st_size
    record = {
        "bench": "soak_telecom",
        "setup": setup,
        **fields,
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}",
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
