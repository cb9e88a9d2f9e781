"""The test suite's fake OpenAI-compatible endpoint (gold actions of telecom's distinct-ticket
tasks, zero latency) in a process of its own, so that it does not share the measured process's
interpreter: `python benchmarks/endpoint_process.py` prints its base URL, serves until its stdin
closes. `GET /recorded` answers the request bodies received since the last call."""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from engine import tau2lib  # noqa: E402
from tests.fake_openai_server import FakeOpenAI, distinct_ticket_tasks, gold_agent  # noqa: E402


def main() -> None:
    tau2lib.load()
    fake = FakeOpenAI(gold_agent(distinct_ticket_tasks("telecom"), solo_mode=True))

    async def recorded(_: Request) -> JSONResponse:
        bodies = [r.body for r in fake.requests]
        fake.requests.clear()
        return JSONResponse(bodies)

    app = Starlette(routes=[Route("/v1/chat/completions", fake._completions, methods=["POST"]),
                            Route("/recorded", recorded)])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           loop="uvloop", backlog=4096, timeout_graceful_shutdown=1))

    def stop_when_stdin_closes() -> None:
        sys.stdin.read()
        server.should_exit = True

    threading.Thread(target=stop_when_stdin_closes, daemon=True).start()
    print(f"http://127.0.0.1:{sock.getsockname()[1]}/v1", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
