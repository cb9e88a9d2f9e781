"""Engine vs stock tau2, side by side in one run; prints JSON lines with ratios.

    python benchmarks/bench_engine.py [--only NAME ...] [--quick]

Every line carries its setup (tasks, samples, concurrency, latency), the date, the
machine and its load average. Benchmarks (each one JSON line):
- compare_{telecom,airline}: one task set x samples, four ways: stock tau2 driven directly
  (sequential: env constructor, initial state, gold actions, stock `evaluate_simulation`);
  stock tau2's own runner (`tau2.run.run_tasks`, `tau2 run`'s path: thread pool of
  `concurrency`, Orchestrator, scripted model, see `stock_runner.py`); the engine cold (a
  fresh process, first episode of each task: domain parsed, templates and gold replays
  built during the run) and warm (the remaining samples, same process).
- rss_airline_300: peak RSS of a `tau2-engine run` subprocess holding 300 airline
  episodes in flight (2 s simulated latency).
- packing_telecom_512: 512 telecom episodes of five model calls each, all in flight at 2 s
  simulated latency: model-call time / (concurrency x wall), CPU per episode, event-loop lag,
  in a fresh subprocess set up as the CLI sets up its process (`engine.process`: uvloop, the
  tuned collector) and, beside it, one that embeds the library as is (asyncio's loop,
  Python's default collector).
- packing_telecom_10000 (`--only scale`, not in the default set; minutes): the same at 10,000
  in flight and 10 s latency, as the CLI runs, with peak RSS.
- event_sink: events/s through EventLog.emit into the JSONL file sink.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import anyio

from engine import catalog, tau2lib
from engine.config import EngineConfig, EpisodeSpec, PolicyConfig
from engine.engine import Engine
from engine.events import EventLog, JsonlFileSink, read_events
from engine.loop_lag import peak_rss_mb
from engine.process import event_loop_name, own_process, run_loop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import stock_runner  # noqa: E402

MACHINE = f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}"


def emit(name: str, setup: dict[str, Any], **fields: Any) -> None:
    record = {
        "bench": name,
        "setup": setup,
        **fields,
        "date": datetime.datetime.now().isoformat(timespec="minutes"),
        "machine": MACHINE,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(record), flush=True)


def stock_episode(domain: str, task: Any, solo_mode: bool) -> float:
    """One episode of stock tau2: environment, initial state, gold actions, evaluation."""
    from tau2.data_model.message import AssistantMessage, ToolCall, UserMessage
    from tau2.data_model.simulation import SimulationRun
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

    registry = tau2lib.load().registry
    env = registry.get_env_constructor(domain)(solo_mode=solo_mode)
    state = task.initial_state
    history = list(state.message_history or []) if state else []
    env.set_state(
        initialization_data=state.initialization_data if state else None,
        initialization_actions=state.initialization_actions if state else None,
        message_history=history,
    )
    messages: list[Any] = list(history)
    for i, action in enumerate(task.evaluation_criteria.actions or []):
        by_user = action.requestor == "user" and not solo_mode
        call = ToolCall(id=f"c{i}", name=action.name, arguments=dict(action.arguments),
                        requestor="user" if by_user else "assistant")
        if by_user:
            messages.append(UserMessage(role="user", content=None, tool_calls=[call]))
        else:
            messages.append(AssistantMessage(role="assistant", content=None, tool_calls=[call]))
        messages.append(env.get_response(call))
    if solo_mode:
        messages.append(AssistantMessage(role="assistant", content="###STOP###"))
        reason = "agent_stop"
    else:
        info = task.evaluation_criteria.communicate_info or []
        messages.append(AssistantMessage(role="assistant", content="; ".join(info) or "Done."))
        messages.append(UserMessage(role="user", content="###STOP###"))
        reason = "user_stop"
    simulation = SimulationRun(id="s", task_id=task.id, start_time="", end_time="", duration=0.0,
                               termination_reason=reason, messages=messages)
    return evaluate_simulation(simulation, task, EvaluationType.ALL, solo_mode, domain).reward


def stock_direct(domain: str, tasks: list[Any], samples: int) -> tuple[float, list[float]]:
    started = time.perf_counter()
    rewards = [stock_episode(domain, t, catalog.default_solo_mode(t)) for _ in range(samples) for t in tasks]
    return time.perf_counter() - started, rewards


def specs_for(domain: str, tasks: list[Any], n_samples: int, latency_ms: float = 0.0,
              first_sample: int = 0) -> list[EpisodeSpec]:
    policy = PolicyConfig(name="oracle", latency_ms=latency_ms)
    return [
        EpisodeSpec(domain=domain, task_id=t.id, sample=s, solo_mode=catalog.default_solo_mode(t),
                    policy=policy)
        for s in range(first_sample, first_sample + n_samples) for t in tasks
    ]


def engine_run(specs: list[EpisodeSpec], concurrency: int, events_path: Path,
               owned: bool = True) -> tuple[float, dict[str, Any]]:
    """`Engine.run` on the loop the CLI uses (`owned`) or on asyncio's."""
    events = EventLog("bench", [JsonlFileSink(events_path, append=False)])
    engine = Engine(EngineConfig(concurrency=concurrency, run_id="bench"), events)
    started = time.perf_counter()
    summary = run_loop(engine.run, specs) if owned else anyio.run(engine.run, specs)
    wall = time.perf_counter() - started
    events.close()
    end = next(e for e in read_events(events_path) if e["event"] == "run_end")
    assert summary.as_dict()["episodes"] == len(specs)
    return wall, end


def engine_cold_warm(domain: str, n_tasks: int, samples: int, concurrency: int, tmp: Path) -> None:
    """In a fresh process: sample 0 of every task (cold), then samples 1.. (warm)."""
    tasks = list(catalog.task_set(domain, None).tasks)[:n_tasks]
    cold_wall, cold_end = engine_run(specs_for(domain, tasks, 1), concurrency, tmp / "cold.jsonl")
    warm_wall, warm_end = engine_run(specs_for(domain, tasks, samples - 1, first_sample=1), concurrency,
                                     tmp / "warm.jsonl")
    print(json.dumps({
        "cold_wall_s": cold_wall, "cold_episodes": len(tasks), "cold_mean_reward": cold_end["mean_reward"],
        "warm_wall_s": warm_wall, "warm_episodes": len(tasks) * (samples - 1),
        "warm_mean_reward": warm_end["mean_reward"], "loop_lag_s": warm_end["loop_lag_s"],
    }))


def child(*args: str) -> dict[str, Any]:
    """Run this script with `args` in a fresh interpreter; its last stdout line as JSON."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def bench_compare(domain: str, n_tasks: int, samples: int, concurrency: int) -> None:
    """Stock direct, stock runner, engine cold and warm: same tasks, same samples."""
    tasks = list(catalog.task_set(domain, None).tasks)[:n_tasks]
    solo = catalog.default_solo_mode(tasks[0])
    assert all(catalog.default_solo_mode(t) == solo for t in tasks)
    direct_wall, direct_rewards = stock_direct(domain, tasks, samples)
    runner_wall, runner_rewards = stock_runner.run_stock(
        domain, tasks, solo_mode=solo, trials=samples, concurrency=concurrency, latency_s=0.0)
    engine = child("--engine-child", domain, str(n_tasks), str(samples), str(concurrency))
    episodes = len(tasks) * samples
    direct_eps = episodes / direct_wall
    runner_eps = episodes / runner_wall
    cold_eps = engine["cold_episodes"] / engine["cold_wall_s"]
    warm_eps = engine["warm_episodes"] / engine["warm_wall_s"]
    all_eps = episodes / (engine["cold_wall_s"] + engine["warm_wall_s"])
    mean = lambda xs: round(sum(xs) / len(xs), 3)  # noqa: E731
    emit(f"compare_{domain}",
         {"tasks": len(tasks), "samples": samples, "episodes": episodes, "solo_mode": solo,
          "concurrency": {"stock_direct": 1, "stock_runner": concurrency, "engine": concurrency},
          "latency_ms": 0, "engine_cold": "fresh process, sample 0 of each task",
          "engine_warm": f"same process, samples 1..{samples - 1}"},
         stock_direct_eps=round(direct_eps, 2), stock_runner_eps=round(runner_eps, 2),
         engine_cold_eps=round(cold_eps, 2), engine_warm_eps=round(warm_eps, 2),
         engine_all_eps=round(all_eps, 2),
         cold_vs_direct=round(cold_eps / direct_eps, 1), warm_vs_direct=round(warm_eps / direct_eps, 1),
         all_vs_direct=round(all_eps / direct_eps, 1), all_vs_runner=round(all_eps / runner_eps, 1),
         warm_vs_runner=round(warm_eps / runner_eps, 1),
         mean_reward={"stock_direct": mean(direct_rewards), "stock_runner": mean(runner_rewards),
                      "engine_cold": engine["cold_mean_reward"], "engine_warm": engine["warm_mean_reward"]},
         engine_warm_loop_lag_s=engine["loop_lag_s"])


def bench_rss(tmp: Path) -> None:
    path = tmp / "rss.jsonl"
    cmd = [sys.executable, "-c", "from engine.cli import entrypoint; entrypoint()",
           "run", "--domain", "airline", "--n-samples", "6", "--concurrency", "300",
           "--latency-ms", "2000", "--events", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    end = next(e for e in read_events(path) if e["event"] == "run_end")
    emit("rss_airline_300", {"tasks": 50, "samples": 6, "concurrency": 300, "latency_ms": 2000,
                             "process": "tau2-engine run subprocess"},
         episodes=end["episodes"], peak_rss_mb=round(end["peak_rss_mb"], 1), target_mb=1536,
         episodes_per_s=round(end["episodes_per_s"], 1))


MODEL_CALLS = 5
"""Model calls per episode of the packing benchmarks: telecom's tasks of four gold actions
(the oracle's four tool calls and its closing message)."""


def equal_length_tasks(domain: str, model_calls: int) -> list[Any]:
    """The domain's tasks whose oracle episode makes `model_calls` model calls."""
    return [t for t in catalog.task_set(domain, None).tasks
            if len(t.evaluation_criteria.actions or []) + 1 == model_calls]


def packing_waves(n: int, latency_ms: float, tmp: Path, owned: bool) -> dict[str, Any]:
    """Two identical waves of `n` telecom episodes of equal length, all in flight at once.
    The first (cold) wave also pays the one-off work of a process: parsing the domain,
    building its templates, the gold replay of each task. The second (warm) wave is the
    steady state of a long RL run, where those are long done."""
    tasks = equal_length_tasks("telecom", MODEL_CALLS)
    specs = specs_for("telecom", tasks, -(-n // len(tasks)), latency_ms)[:n]
    figures: dict[str, Any] = {"tasks": len(tasks), "event_loop": event_loop_name() if owned else "asyncio",
                               "gc_threshold": gc.get_threshold()}
    for wave in ("cold", "warm"):
        path = tmp / f"packing-{wave}.jsonl"
        cpu_started = time.process_time()
        wall, end = engine_run(specs, n, path, owned)
        cpu = time.process_time() - cpu_started
        model_time = sum(e["latency_s"] for e in read_events(path)
                         if e["event"] == "turn" and e["role"] == "assistant" and not e.get("history"))
        figures[wave] = {"wall_s": round(wall, 2), "packing_efficiency": round(model_time / (n * wall), 3),
                         "cpu_ms_per_episode": round(cpu / n * 1000, 2), "loop_lag_s": end["loop_lag_s"],
                         "mean_reward": end["mean_reward"]}
        path.unlink()
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return figures


PROCESS_SETUPS = {
    "cli": "as the CLI sets up its process (engine.process: uvloop, tuned collector, frozen shared data)",
    "library": "the library embedded as is (asyncio loop, Python's default collector)",
}


def bench_packing(tmp: Path, n: int, latency_ms: float, setups: tuple[str, ...]) -> None:
    """`n` in flight at `latency_ms`, each process setup in a fresh process (its peak RSS is
    the run's own), side by side."""
    results = {setup: child("--packing-child", str(n), str(latency_ms), setup) for setup in setups}
    first = next(iter(results.values()))
    emit(f"packing_telecom_{n}",
         {"domain": "telecom", "episodes": n, "in_flight": n, "latency_ms": latency_ms,
          "tasks": first["tasks"], "model_calls_per_episode": MODEL_CALLS,
          "waves": "cold (fresh process), then warm (same specs again)",
          "processes": {setup: PROCESS_SETUPS[setup] for setup in setups}},
         **{setup: r for setup, r in results.items()})


def bench_event_sink(tmp: Path, n: int = 100_000) -> None:
    path = tmp / "sink.jsonl"
    events = EventLog("bench", [JsonlFileSink(path, append=False)])
    calls = [{"id": "call_1", "name": "get_customer_by_phone", "arguments": {"phone_number": "555-123-2002"}}]
    started = time.perf_counter()
    for i in range(n):
        events.emit("turn", role="assistant", turn=i, content=None, tool_calls=calls, latency_s=0.001,
                    usage=None, model="oracle", stop=False, episode_id="e", domain="telecom", task_id="t",
                    sample=0)
    emitted = time.perf_counter() - started
    events.close()
    total = time.perf_counter() - started
    lines = sum(1 for _ in open(path, "rb"))
    emit("event_sink", {"events": n, "sink": "JsonlFileSink"}, lines=lines,
         emit_events_per_s=round(n / emitted), written_events_per_s=round(n / total))


BENCHES = ("telecom", "airline", "rss", "packing", "sink", "scale")
DEFAULT = ("telecom", "airline", "rss", "packing", "sink")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", choices=BENCHES, default=None,
                        help=f"subset of: {' '.join(BENCHES)} (default: {' '.join(DEFAULT)})")
    parser.add_argument("--quick", action="store_true", help="fewer tasks")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="threads of stock tau2's runner and episodes in flight of the engine")
    parser.add_argument("--scale", type=int, default=10_000, help="episodes in flight of `scale`")
    parser.add_argument("--engine-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--packing-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (args.packing_child and args.packing_child[2] == "library"):
        own_process()  # a benchmark owns its process, as the CLI does
    tau2lib.load()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if args.engine_child:
            domain, n_tasks, samples, concurrency = args.engine_child
            engine_cold_warm(domain, int(n_tasks), int(samples), int(concurrency), tmp)
            return
        if args.packing_child:
            n, latency_ms, setup = args.packing_child
            print(json.dumps(packing_waves(int(n), float(latency_ms), tmp, owned=setup == "cli")))
            return
        only = set(args.only or DEFAULT)
        if "telecom" in only:
            bench_compare("telecom", 40 if args.quick else 114, 2, args.concurrency)
        if "airline" in only:
            bench_compare("airline", 4 if args.quick else 10, 2, args.concurrency)
        if "rss" in only:
            bench_rss(tmp)
        if "packing" in only:
            bench_packing(tmp, 512, 2000.0, ("cli", "library"))
        if "scale" in only:
            bench_packing(tmp, args.scale, 10_000.0, ("cli",))
        if "sink" in only:
            bench_event_sink(tmp)


if __name__ == "__main__":
    main()
