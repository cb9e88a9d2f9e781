"""A real OpenAI-compatible HTTP server for tests: Starlette on uvicorn, on a loopback port,
in a thread of the test process (so a subprocess under test can reach it too).

It answers `POST /v1/chat/completions` with whatever a responder function returns,
records every request (headers and JSON body), and injects queued faults: an HTTP status
(429, 5xx) with an optional message, a delay (to trip client timeouts), a tool call with
malformed JSON arguments or with an unknown tool name, a given reply (empty, text).
Responders here are stateless (they read the conversation in the request), so retried and
concurrent requests get consistent answers.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engine.episode import GREETING
from engine.policies.oracle import oracle_script
from engine.policies.scripted import SayStep, ToolStep

Reply = tuple[str | None, list[tuple[str, str]]]
"""A responder's answer: (content, [(tool name, JSON arguments string), ...])."""
Responder = Callable[[dict[str, Any]], Reply]

BAD_CALL_PREFIX = "bad_"
_ids = itertools.count()


@dataclass(frozen=True)
class Fault:
    """One injected fault, consumed by the next request."""

    status: int | None = None
    """Answer with this HTTP status (e.g. 429, 500, 503)."""
    delay_s: float = 0.0
    """Wait this long before answering (beyond the client timeout: a timeout)."""
    malformed_args: bool = False
    """Answer with a call of the scripted tool whose arguments are not JSON."""
    unknown_tool: bool = False
    """Answer with a call of a tool that does not exist."""
    message: str | None = None
    """With `status`: the error message (default "injected <status>")."""
    reply: Reply | None = None
    """Answer with this instead of the responder's reply (e.g. `(None, [])`: empty)."""


@dataclass
class Recorded:
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeOpenAI:
    responder: Responder
    latency_s: float = 0.0
    by_key: dict[str, Responder] = field(default_factory=dict)
    """Responders chosen by the request's API key (Authorization: Bearer KEY) instead of
    `responder`: e.g. one per task, when the conversation cannot tell tasks apart."""
    faults: collections.deque[Fault] = field(default_factory=collections.deque)
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0
    rules: list[Callable[[dict[str, Any]], Fault | None]] = field(default_factory=list)
    """One-shot faults chosen by the request: the first rule that answers a Fault for a
    request is used up by it (checked before `faults`)."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def inject(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    async def _completions(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(Recorded(dict(request.headers), body))
        fault = self._ruled(body) or (self.faults.popleft() if self.faults else Fault())
        if self.latency_s or fault.delay_s:
            await asyncio.sleep(self.latency_s + fault.delay_s)
        if fault.status is not None:
            return JSONResponse(
                {"error": {"message": fault.message or f"injected {fault.status}",
                           "type": "server_error"}},
                status_code=fault.status,
            )
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        responder = self.by_key.get(key, self.responder)
        content, calls = fault.reply if fault.reply is not None else responder(body)
        prefix = "call_"
        if fault.unknown_tool:
            content, calls, prefix = None, [("frobnicate_widget", "{}")], BAD_CALL_PREFIX
        elif fault.malformed_args:
            name = calls[0][0] if calls else "get_customer_by_phone"
            content, calls, prefix = None, [(name, '{"phone_number": "555')], BAD_CALL_PREFIX
        return JSONResponse(completion(body, content, calls, prefix))

    def inject_when(self, rule: Callable[[dict[str, Any]], Fault | None]) -> None:
        self.rules.append(rule)

    def _ruled(self, body: dict[str, Any]) -> Fault | None:
        for rule in self.rules:
            fault = rule(body)
            if fault is not None:
                self.rules.remove(rule)
                return fault
        return None

    @contextmanager
    def running(self) -> Iterator[FakeOpenAI]:
        app = Starlette(routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])])
        # IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (no 40 ms ACK stalls)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=1, lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        started = threading.Event()
        while not server.started and thread.is_alive():
            started.wait(0.01)
        try:
            yield self
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()


def completion(body: dict[str, Any], content: str | None, calls: list[tuple[str, str]],
               prefix: str = "call_") -> dict[str, Any]:
    prompt_tokens = max(1, len(json.dumps(body["messages"])) // 4)
    completion_tokens = 7 + len(content or "") // 4 + 5 * len(calls)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": f"{prefix}{next(_ids)}", "type": "function",
             "function": {"name": name, "arguments": arguments}}
            for name, arguments in calls
        ]
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if calls else "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def played(messages: list[dict[str, Any]]) -> int:
    """Agent steps already played: assistant messages, minus injected bad calls and the
    fixed greeting."""
    n = 0
    for m in messages:
        if m.get("role") != "assistant" or m.get("content") == GREETING:
            continue
        calls = m.get("tool_calls") or []
        if any(c["id"].startswith(BAD_CALL_PREFIX) for c in calls):
            continue
        n += 1
    return n


def gold_agent(tasks: Iterable[Any], *, solo_mode: bool) -> Responder:
    """Plays each task's gold actions (the oracle's script) then `done` / the closing
    message. The task is the one whose ticket is in the system prompt (solo), or the only
    one given."""
    scripts = [(task, oracle_script(task, solo_mode=solo_mode)) for task in tasks]
    tickets = [task.ticket for task, _ in scripts]
    if len(scripts) > 1 and len(set(tickets)) != len(tickets):
        raise ValueError("tasks must have distinct tickets (see distinct_ticket_tasks)")

    def respond(body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        if len(scripts) == 1:
            script = scripts[0][1]
        else:
            script = next(s for t, s in scripts if t.ticket and t.ticket in system)
        done = played(messages)
        steps = [*script.steps, script.final]
        step = steps[min(done, len(steps) - 1)]
        if isinstance(step, ToolStep):
            return None, [(step.name, json.dumps(step.arguments))]
        assert isinstance(step, SayStep)
        return step.text, []

    return respond


def distinct_ticket_tasks(domain: str) -> list[Any]:
    """The first task of each distinct ticket (many telecom tasks share one)."""
    from engine import catalog

    first: dict[str, Any] = {}
    for task in catalog.task_set(domain).tasks:
        first.setdefault(task.ticket, task)
    return list(first.values())


def scripted_user(task: Any) -> Responder:
    """An LLM user endpoint that states the reason for the call, performs the user-side
    gold action the agent asks for, says it is done, and stops when the agent closes."""
    from engine.users.scripted import opening_line

    criteria = task.evaluation_criteria
    pending = [a for a in (criteria.actions or []) if a.requestor == "user"] if criteria else []

    def respond(body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        last = messages[-1]
        if last["role"] == "tool":
            return "Done, I did that.", []
        text = last.get("content") or ""
        done = sum(1 for m in messages if m["role"] == "assistant" and m.get("tool_calls"))
        if "on your side" in text and done < len(pending):
            action = pending[done]
            return None, [(action.name, json.dumps(dict(action.arguments)))]
        if "Anything else" in text:
            return "###STOP###", []
        return opening_line(task), []

    return respond


def non_solo_agents(tasks: Iterable[Any]) -> Responder:
    """`gold_agent` of several non-solo tasks at once: the task is the one whose opening
    line (see `scripted_user`) the conversation starts with."""
    from engine.users.scripted import opening_line

    by_opening = {opening_line(task): gold_agent([task], solo_mode=False) for task in tasks}

    def respond(body: dict[str, Any]) -> Reply:
        first = next(m["content"] for m in body["messages"] if m["role"] == "user")
        return by_opening[first](body)

    return respond


def scripted_users(tasks: Iterable[Any]) -> Responder:
    """`scripted_user` of several tasks at once: the task is the one whose scenario is in
    the user simulator's system prompt."""
    by_scenario = {str(task.user_scenario): scripted_user(task) for task in tasks}

    def respond(body: dict[str, Any]) -> Reply:
        system = body["messages"][0]["content"]
        return next(r for scenario, r in by_scenario.items() if scenario in system)(body)

    return respond


def judged_assertions(body: dict[str, Any]) -> list[str]:
    """The NL assertions of a judge request (tau2's prompt ends with their Python list)."""
    import ast

    prompt = body["messages"][-1]["content"]
    listed = prompt.rsplit("expectedOutcomes:", 1)[1].strip()
    found = ast.literal_eval(listed)
    assert isinstance(found, list)
    return [str(a) for a in found]


def scripted_judge(met: Callable[[str], bool] = lambda assertion: True) -> Responder:
    """An NL-assertion judge endpoint answering tau2's verdict JSON: one verdict per
    assertion of the request, `met(assertion)` deciding it."""

    def respond(body: dict[str, Any]) -> Reply:
        results = [
            {"expectedOutcome": a, "reasoning": f"scripted verdict on {a[:30]!r}", "metExpectation": met(a)}
            for a in judged_assertions(body)
        ]
        return json.dumps({"results": results}), []

    return respond
