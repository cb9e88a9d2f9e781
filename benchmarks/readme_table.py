"""The README's Performance table, generated from benchmark output (JSON lines).

    cat results/*.jsonl | python benchmarks/readme_table.py > table.md

Reads the lines of `bench_engine.py`, `bench_workers.py`, `bench_model_overhead.py` and
`bench_real_model.py`; prints one table row per line with its figure, its setup, the
date and load average it was measured at, and whether its target is met.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

Row = tuple[str, str, str]


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _when(r: dict[str, Any]) -> str:
    return f"{r['date']}, load {r.get('load_avg_1m', '?')}"


def compare(r: dict[str, Any]) -> list[Row]:
    s, domain = r["setup"], r["bench"].removeprefix("compare_")
    threads = s["concurrency"]["stock_runner"]
    setup = f"{s['tasks']} tasks x {s['samples']} samples, concurrency {s['concurrency']['engine']}, 0 ms"
    return [
        (f"{domain} oracle: engine vs stock tau2 driven directly ({setup}; {_when(r)})",
         f"cold {r['engine_cold_eps']} / warm {r['engine_warm_eps']} vs {r['stock_direct_eps']} episodes/s: "
         f"**{r['cold_vs_direct']}x** cold, **{r['warm_vs_direct']}x** warm", ""),
        (f"{domain} oracle: engine vs stock tau2's runner (`run_tasks`, {threads} threads; same setup)",
         f"{r['engine_all_eps']} (cold+warm) vs {r['stock_runner_eps']} episodes/s: "
         f"**{r['all_vs_runner']}x**", ""),
    ]


def rss(r: dict[str, Any]) -> list[Row]:
    ok = r["peak_rss_mb"] <= r["target_mb"]
    s = r["setup"]
    return [(f"{s['concurrency']} airline episodes in flight ({s['latency_ms']} ms; {_when(r)})",
             f"peak RSS **{r['peak_rss_mb']:.0f} MB**", f"<= 1.5 GiB: {_met(ok)}")]


SETUP_NAMES = {"cli": "as the CLI runs (uvloop, tuned collector)",
               "library": "library embedded as is (asyncio, default collector)"}


def packing(r: dict[str, Any]) -> list[Row]:
    s = r["setup"]
    n = s["in_flight"]
    runs = {k: r[k] for k in SETUP_NAMES if k in r} or {"": r}  # older lines: one unnamed setup
    rows = []
    for name, run in runs.items():
        warm, cold = run["warm"], run["cold"]
        lag_ms = warm["loop_lag_s"]["p99"] * 1000
        cpu_ms = warm["cpu_ms_per_episode"]
        figure = (f"packing **{warm['packing_efficiency']}** (cold wave {cold['packing_efficiency']}), loop "
                  f"lag p99 **{lag_ms:.1f} ms** (max {warm['loop_lag_s']['max'] * 1000:.0f} ms), "
                  f"**{cpu_ms} ms** CPU/episode, peak RSS {run['peak_rss_mb']:.0f} MB")
        if n >= 10_000:
            ok = (warm["packing_efficiency"] >= 0.9 and lag_ms <= 50 and run["peak_rss_mb"] <= 4096
                  and cpu_ms <= 3)
            target = f">= 0.90, <= 50 ms, <= 4 GiB, <= 3 ms CPU: {_met(ok)}"
        else:
            target = ""
        how = f", {SETUP_NAMES[name]}" if name else ""
        rows.append((f"{n} telecom episodes in flight, {s['latency_ms'] / 1000:.0f} s latency, "
                     f"{s['model_calls_per_episode']} model calls each{how} ({_when(r)})", figure, target))
    return rows


def sink(r: dict[str, Any]) -> list[Row]:
    return [(f"event sink (JSONL; {_when(r)})", f"{r['written_events_per_s'] // 1000}k events/s", "")]


def workers(r: dict[str, Any]) -> list[Row]:
    s = r["setup"]
    parts = ", ".join(f"{k.removeprefix('workers_')} worker(s) {r[k]['episodes_per_s']} episodes/s"
                      for k in r["speedup"])
    best = max(r["speedup"].values())
    return [(f"`--workers` scaling, {s['domain']} oracle x {s['samples']} samples, 0 ms, {s['cpus']} cores "
             f"({_when(r)})", f"{parts}: **{best}x**", f"near-linear 1 -> 2: {_met(best >= 1.8)}")]


def overhead(r: dict[str, Any]) -> list[Row]:
    c = r["concurrency"]
    ok = r["overhead_ms"] <= 0.5
    target = f"<= 0.5 ms at 1,000: {_met(ok)}" if c >= 1000 else ""
    figure = (f"**{r['overhead_ms']} ms** wall (episode {r['episode_ms']} ms vs bare client {r['raw_ms']} ms "
              "per call)")
    if r.get("overhead_cpu_ms") is not None:
        figure += (f"; CPU **{r['overhead_cpu_ms']} ms** (engine {r['cpu_ms']} ms vs bare client "
                   f"{r['raw_cpu_ms']} ms per call); {r['calls_per_s']} vs {r['raw_calls_per_s']} calls/s")
    own = "process of its own" in r.get("setup", {}).get("endpoint", "")
    where = "its own process" if own else "a thread of the benchmark's process"
    return [(f"engine overhead per model call, local zero-latency endpoint in {where}, {c} in flight "
             f"({_when(r)})", figure, target)]


def real_model(r: dict[str, Any]) -> list[Row]:
    s = r["setup"]
    return [(f"real model: {s['server']}, {s['model']}, {s['episodes']} {s['domain']} episodes, "
             f"concurrency {s['concurrency']} ({_when(r)})",
             f"requests in flight mean {r['in_flight_mean']} (max {r['in_flight_max']}), server busy "
             f"**{r['server_busy_share']:.0%}** of wall, engine CPU **{r['engine_cpu_share']:.0%}** of wall",
             f"in flight >= slots: {_met(r['server_busy_share'] >= 0.95)}")]


BUILDERS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "compare_": compare, "rss_": rss, "packing_": packing, "event_sink": sink,
    "workers_scaling": workers, "model_overhead": overhead, "real_model": real_model,
}


def main() -> None:
    print("| benchmark (setup; date, 1-min load average) | figure | target |")
    print("|---|---|---|")
    for line in sys.stdin:
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        name = record.get("bench", "")
        build = next((b for prefix, b in BUILDERS.items() if name.startswith(prefix)), None)
        if build is None:
            continue
        for row in build(record):
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
