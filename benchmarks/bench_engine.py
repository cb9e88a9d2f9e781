"""Engine vs stock tau2, side by side in one run; prints JSON lines with ratios.

    /work/venv/bin/python benchmarks/bench_engine.py [--only NAME ...] [--quick]

Benchmarks (each one JSON line):
- stock_direct_{telecom,airline}: stock tau2 driven directly, sequentially (stock env
  constructor, task initial state, gold actions replayed, stock `evaluate_simulation`),
  vs the engine's oracle policy at concurrency 32 (zero latency): episodes/s and ratio.
- gym_telecom: stock AgentGymEnv (solo, gold actions as steps) vs the engine.
- rss_airline_300: peak RSS of a `tau2-engine run` subprocess holding 300 airline
  episodes in flight (2 s simulated latency).
- packing_telecom_512: 512 telecom episodes of equal length in flight at 2 s simulated
  latency: model-call time / (concurrency x wall), and event-loop lag.
- event_sink: events/s through EventLog.emit into the JSONL file sink.
"""

from __future__ import annotations

import argparse
import collections
import datetime
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

MACHINE = f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}"


def emit(name: str, **fields: Any) -> None:
    record = {"bench": name, "date": datetime.date.today().isoformat(), "machine": MACHINE, **fields}
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


def stock_direct(domain: str, n: int) -> float:
    tasks = catalog.task_set(domain, None).tasks[:n]
    started = time.perf_counter()
    for task in tasks:
        stock_episode(domain, task, catalog.default_solo_mode(task))
    return len(tasks) / (time.perf_counter() - started)


def specs_for(domain: str, tasks: list[Any], n_samples: int, latency_ms: float = 0.0) -> list[EpisodeSpec]:
    policy = PolicyConfig(name="oracle", latency_ms=latency_ms)
    return [
        EpisodeSpec(domain=domain, task_id=t.id, sample=s, solo_mode=catalog.default_solo_mode(t),
                    policy=policy)
        for s in range(n_samples) for t in tasks
    ]


def engine_run(specs: list[EpisodeSpec], concurrency: int, events_path: Path) -> tuple[float, dict[str, Any]]:
    events = EventLog("bench", [JsonlFileSink(events_path, append=False)])
    engine = Engine(EngineConfig(concurrency=concurrency, run_id="bench"), events)
    started = time.perf_counter()
    summary = anyio.run(engine.run, specs)
    wall = time.perf_counter() - started
    events.close()
    end = next(e for e in read_events(events_path) if e["event"] == "run_end")
    assert summary.as_dict()["episodes"] == len(specs)
    return wall, end


def bench_stock_direct(domain: str, stock_n: int, samples: int, tmp: Path) -> float:
    tasks = list(catalog.task_set(domain, None).tasks)
    stock = stock_direct(domain, stock_n)
    wall, end = engine_run(specs_for(domain, tasks, samples), 32, tmp / f"direct-{domain}.jsonl")
    ours = len(tasks) * samples / wall
    emit(f"stock_direct_{domain}", stock_eps=round(stock, 2), engine_eps=round(ours, 2),
         ratio=round(ours / stock, 1), engine_mean_reward=end["mean_reward"], stock_tasks=stock_n,
         engine_episodes=len(tasks) * samples, loop_lag_s=end["loop_lag_s"])
    return ours


def bench_gym(n: int, engine_eps: float) -> None:
    from tau2.gym.gym_agent import AgentGymEnv

    tasks = catalog.task_set("telecom", None).tasks[:n]
    started = time.perf_counter()
    rewards = []
    for task in tasks:
        env = AgentGymEnv(domain="telecom", task_id=task.id, solo_mode=True)
        env.reset()
        reward, terminated = 0.0, False
        for action in task.evaluation_criteria.actions or []:
            step = json.dumps({"name": action.name, "arguments": action.arguments})
            _, reward, terminated, _, _ = env.step(step)
        while not terminated:
            _, reward, terminated, _, _ = env.step(json.dumps({"name": "done", "arguments": {}}))
        rewards.append(reward)
    gym_eps = len(tasks) / (time.perf_counter() - started)
    emit("gym_telecom", gym_eps=round(gym_eps, 3), engine_eps=round(engine_eps, 2),
         ratio=round(engine_eps / gym_eps), gym_mean_reward=sum(rewards) / len(rewards), gym_episodes=n)


def bench_rss(tmp: Path) -> None:
    path = tmp / "rss.jsonl"
    cmd = [sys.executable, "-c", "from engine.cli import entrypoint; entrypoint()",
           "run", "--domain", "airline", "--n-samples", "6", "--concurrency", "300",
           "--latency-ms", "2000", "--events", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    end = next(e for e in read_events(path) if e["event"] == "run_end")
    emit("rss_airline_300", episodes=end["episodes"], in_flight=300, peak_rss_mb=round(end["peak_rss_mb"], 1),
         target_mb=1536, episodes_per_s=round(end["episodes_per_s"], 1))


def equal_length_tasks(domain: str) -> list[Any]:
    """The domain's tasks with the most common number of gold actions (equal episode length)."""
    tasks = list(catalog.task_set(domain, None).tasks)
    count = collections.Counter(len(t.evaluation_criteria.actions or []) for t in tasks)
    common = count.most_common(1)[0][0]
    return [t for t in tasks if len(t.evaluation_criteria.actions or []) == common]


def bench_packing(tmp: Path, n: int = 512, latency_ms: float = 2000.0) -> None:
    """Two identical waves of `n` episodes, all in flight at once. The first (cold) wave
    also pays the one-off work of a process: parsing the domain, building its templates,
    the gold replay of each task. The second (warm) wave is the steady state of a long RL
    run, where those are long done; `packing_efficiency` is the warm wave's."""
    tasks = equal_length_tasks("telecom")
    specs = specs_for("telecom", tasks, -(-n // len(tasks)), latency_ms)[:n]
    figures = []
    for wave in ("cold", "warm"):
        path = tmp / f"packing-{wave}.jsonl"
        wall, end = engine_run(specs, n, path)
        model_time = sum(e["latency_s"] for e in read_events(path)
                         if e["event"] == "turn" and e["role"] == "assistant" and not e.get("history"))
        figures.append((wall, model_time / (n * wall), end))
    (cold_wall, cold_packing, _), (wall, packing, end) = figures
    emit("packing_telecom_512", episodes=n, latency_ms=latency_ms, wall_s=round(wall, 2),
         packing_efficiency=round(packing, 3), cold_wall_s=round(cold_wall, 2),
         cold_packing_efficiency=round(cold_packing, 3), loop_lag_s=end["loop_lag_s"],
         peak_rss_mb=round(end["peak_rss_mb"], 1))


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
    emit("event_sink", events=n, lines=lines, emit_events_per_s=round(n / emitted),
         written_events_per_s=round(n / total))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", default=None,
                        help="subset of: telecom airline gym rss packing sink")
    parser.add_argument("--quick", action="store_true", help="fewer episodes")
    args = parser.parse_args()
    only = set(args.only or ["telecom", "airline", "gym", "rss", "packing", "sink"])
    tau2lib.load()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        telecom_eps = None
        if "telecom" in only or "gym" in only:
            quick = args.quick
            telecom_eps = bench_stock_direct("telecom", 40 if quick else 114, 2 if quick else 4, tmp)
        if "airline" in only:
            bench_stock_direct("airline", 5 if args.quick else 10, 2 if args.quick else 4, tmp)
        if "gym" in only and telecom_eps is not None:
            bench_gym(2 if args.quick else 4, telecom_eps)
        if "rss" in only:
            bench_rss(tmp)
        if "packing" in only:
            bench_packing(tmp)
        if "sink" in only:
            bench_event_sink(tmp)


if __name__ == "__main__":
    main()
