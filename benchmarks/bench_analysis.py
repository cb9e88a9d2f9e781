"""Time ``tau2-engine analyze`` on a synthetic 1 M-event file.

Writes a realistic events file (interleaved episodes with turns, tool calls,
rewards, retries, a truncated last line) into a temporary directory, then times
loading it into DuckDB and computing the summary and plot series, the work behind
``tau2-engine analyze --json``. Prints one JSON line.

    python benchmarks/bench_analysis.py [--events N]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from engine.analysis.load import load_events
from engine.analysis.metrics import summarize
from engine.analysis.series import build_series

TOOLS = ("get_customer_by_phone", "get_details_by_id", "toggle_data", "refuel_data", "send_payment")
T0 = datetime(2026, 11, 25, 7, 30, 0, tzinfo=UTC)


def _stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_events(path: Path, target_events: int, *, seed: int = 0) -> int:
    """Write about ``target_events`` events; returns the exact count written."""
    rng = random.Random(seed)
    usage = {"input_tokens": 1500, "output_tokens": 60, "total_tokens": 1560}
    written = 0
    concurrency = 256
    with open(path, "wb") as out:
        out.write(
            orjson.dumps(
                {
                    "event": "run_start",
                    "timestamp": _stamp(0),
                    "run_id": "bench",
                    "config": {"domain": "telecom", "concurrency": concurrency},
                    "episodes_planned": target_events // 16,
                    "engine_version": "0.1.0",
                    "pid": 1,
                }
            )
            + b"\n"
        )
        written += 1
        episode = 0
        while written < target_events - 1:
            task, sample = divmod(episode, 25)
            start = episode / concurrency * 4.0
            ident: dict[str, Any] = {
                "run_id": "bench",
                "episode_id": f"ep-{episode}",
                "domain": "telecom",
                "task_id": f"task_{task}",
                "sample": sample,
                "attempt": 0,
            }
            lines: list[bytes] = []
            clock = start

            def emit(
                name: str,
                fields: dict[str, Any],
                ident: dict[str, Any] = ident,
                lines: list[bytes] = lines,
            ) -> None:
                nonlocal clock
                clock += rng.uniform(0.01, 0.4)
                record = {"event": name, "timestamp": _stamp(clock)} | ident | fields
                lines.append(orjson.dumps(record) + b"\n")

            emit(
                "episode_start",
                {
                    "seed": episode,
                    "policy": "openai",
                    "backend": "local",
                    "solo_mode": False,
                    "max_steps": 100,
                    "timeout_s": 600.0,
                },
            )
            turn = 0
            for _ in range(rng.randint(3, 5)):
                name = rng.choice(TOOLS)
                call_id = f"call_{episode}_{turn}"
                arguments = {"customer_id": f"C{task}", "amount": 2.0}
                emit(
                    "turn",
                    {
                        "role": "assistant",
                        "turn": turn,
                        "content": None,
                        "tool_calls": [{"id": call_id, "name": name, "arguments": arguments}],
                        "latency_s": rng.lognormvariate(-0.5, 0.5),
                        "usage": usage,
                        "model": "qwen3-8b",
                        "stop": False,
                    },
                )
                emit(
                    "tool_call",
                    {
                        "call_id": call_id,
                        "name": name,
                        "arguments": arguments,
                        "result": '{"status": "ok", "data_remaining_gb": 1.5}',
                        "error": rng.random() < 0.05,
                        "latency_s": rng.expovariate(200.0),
                        "requestor": "assistant",
                        "turn": turn + 1,
                    },
                )
                turn += 2
            emit(
                "turn",
                {
                    "role": "user",
                    "turn": turn,
                    "content": "###STOP###",
                    "tool_calls": [],
                    "latency_s": rng.lognormvariate(-1.0, 0.3),
                    "usage": usage,
                    "model": "user-sim",
                    "stop": True,
                },
            )
            if rng.random() < 0.02:
                emit(
                    "retry",
                    {
                        "error_type": "RateLimitError",
                        "error": "429",
                        "backoff_s": 0.5,
                        "scope": "model_call",
                    },
                )
            reward = 1.0 if rng.random() < 0.6 else 0.0
            emit(
                "reward",
                {
                    "reward": reward,
                    "reward_info": {"reward": reward, "reward_basis": ["ENV_ASSERTION"]},
                    "termination_reason": "user_stop",
                },
            )
            status = "completed" if rng.random() < 0.97 else "infra_error"
            emit(
                "episode_end",
                {
                    "status": status,
                    "reward": reward if status == "completed" else 0.0,
                    "turns": turn + 1,
                    "tool_calls": turn // 2,
                    "duration_s": clock - start,
                    "error": None if status == "completed" else "env gone",
                    "error_type": None if status == "completed" else "EnvError",
                    "seed": episode,
                    "policy": "openai",
                    "termination_reason": "user_stop",
                },
            )
            # The last episode is cut short so the file holds exactly target_events lines.
            lines = lines[: target_events - 1 - written]
            out.writelines(lines)
            written += len(lines)
            episode += 1
        # A killed writer leaves half a line behind.
        out.write(b'{"event": "run_end", "timestamp": "2026-11-25T')
        written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        started = time.perf_counter()
        events = write_events(path, args.events)
        generate_s = time.perf_counter() - started
        started = time.perf_counter()
        store = load_events([str(path)])
        loaded = time.perf_counter()
        summary = summarize(store)
        build_series(store)
        seconds = time.perf_counter() - started
        store.con.close()
    line = {
        "bench": "analysis",
        "events": events,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds),
        "load_seconds": round(loaded - started, 3),
        "generate_seconds": round(generate_s, 3),
        "episodes": summary.episodes.final,
        "malformed_lines": summary.malformed_lines,
    }
    sys.stdout.write(orjson.dumps(line).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
