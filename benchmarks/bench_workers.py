"""`--workers N` scaling on the CPU-bound oracle run (zero latency), side by side in one run.

    python benchmarks/bench_workers.py [--workers 1 2] [--samples 4] [--domain telecom]

Each configuration is one `tau2-engine run` subprocess over the same episodes; the figure is
its own `run_end` (`duration_s`: from planning done to the last episode, workers' fork and
domain preparation included; CLI import and task loading excluded). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.events import read_events  # noqa: E402

MACHINE = f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}"


def run(domain: str, samples: int, concurrency: int, workers: int, events: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "engine.cli", "run", "--domain", domain, "--n-samples", str(samples),
           "--concurrency", str(concurrency), "--workers", str(workers), "--events", str(events)]
    subprocess.run(cmd, check=True, capture_output=True)
    end = next(e for e in read_events(events) if e["event"] == "run_end")
    return {"episodes": end["episodes"], "duration_s": round(end["duration_s"], 2),
            "episodes_per_s": round(end["episodes_per_s"], 1), "mean_reward": end["mean_reward"],
            "peak_rss_mb": round(end["peak_rss_mb"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--domain", default="telecom")
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.workers:
            events = Path(tmp) / f"w{n}.jsonl"
            figures[f"workers_{n}"] = run(args.domain, args.samples, args.concurrency, n, events)
    base = figures[f"workers_{args.workers[0]}"]["episodes_per_s"]
    speedup = {k: round(v["episodes_per_s"] / base, 2) for k, v in figures.items()}
    print(json.dumps({
        "bench": "workers_scaling",
        "setup": {"domain": args.domain, "policy": "oracle", "latency_ms": 0, "samples": args.samples,
                  "concurrency": args.concurrency, "workers": args.workers, "cpus": os.cpu_count()},
        **figures, "speedup": speedup,
        "date": datetime.datetime.now().isoformat(timespec="minutes"), "machine": MACHINE,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }), flush=True)


if __name__ == "__main__":
    main()
