"""AReaL 1.0.4's rollout side on loopback, for the `areal` tests: its real proxy app
(`areal.experimental.openai.proxy.proxy_rollout_server.app`: sessions, session keys, capacity,
rewards, export) on uvicorn in a thread, its real loader (`RemoteInfEngine._resolve_workflow`)
and its real `WorkflowExecutor`.

One part cannot run here: `ArealOpenAI`, the proxy's model client, needs a tokenizer from
the Hugging Face hub, an inference server (SGLang / vLLM) and, to parse tool calls, one of
those packages. `ScriptedModelClient` takes its place: it has `ArealOpenAI`'s
`chat.completions.create` signature (the proxy filters request fields by it), forwards the
request to a scripted OpenAI-compatible server, records the interaction in the session's
cache as `ArealOpenAI` does for API models (messages, completion, output message), and
reports failures as `ArealOpenAI` does (a ValueError, which the proxy answers with 500).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import socket
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import openai
import uvicorn
from areal.api.cli_args import InferenceEngineConfig
from areal.experimental.openai.client import AsyncCompletionsWithReward, _ensure_message_dict_list
from areal.experimental.openai.proxy import proxy_rollout_server
from areal.experimental.openai.proxy.server import DEFAULT_ADMIN_API_KEY
from areal.experimental.openai.types import InteractionWithTokenLogpReward
from areal.infra.remote_inf_engine import RemoteInfEngine
from areal.infra.workflow_executor import WorkflowExecutor

_CREATE_SIGNATURE = inspect.signature(AsyncCompletionsWithReward.create)
_CREATE_SIGNATURE = _CREATE_SIGNATURE.replace(parameters=list(_CREATE_SIGNATURE.parameters.values())[1:])


class ScriptedModelClient:
    """Stands in for `ArealOpenAI` behind the real proxy app (see the module docstring)."""

    def __init__(self, base_url: str) -> None:
        self._client = openai.AsyncOpenAI(base_url=base_url, api_key="scripted", max_retries=0)

        async def create(*, messages: Any, areal_cache: Any = None, **kwargs: Any) -> Any:
            return await self._create(messages=messages, areal_cache=areal_cache, **kwargs)

        create.__signature__ = _CREATE_SIGNATURE  # type: ignore[attr-defined]
        self.chat = SimpleNamespace(completions=SimpleNamespace(create=create))

    async def _create(self, *, messages: Any, areal_cache: Any = None, **kwargs: Any) -> Any:
        # The proxy validates the body as OpenAI's TypedDicts: iterables arrive as lazy
        # validator iterators, which ArealOpenAI turns into lists as this does.
        messages = _ensure_message_dict_list("messages", list(messages))
        kwargs = {key: _plain(value) for key, value in kwargs.items()}
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:29]}"
        interaction = InteractionWithTokenLogpReward(messages=copy.deepcopy(messages))
        areal_cache[completion_id] = interaction
        extra_body = kwargs.pop("extra_body", None) or {}
        try:
            completion = await self._client.chat.completions.create(
                messages=messages, model="policy", extra_body=extra_body, **kwargs
            )
        except openai.APIStatusError as exc:
            del areal_cache[completion_id]  # as ArealOpenAI does for a request it refuses
            raise ValueError(str(exc)) from exc
        completion = completion.model_copy(update={"id": completion_id})
        interaction.completion = completion
        output_message = completion.choices[0].message.model_dump(exclude_none=True)
        output_message.setdefault("content", "")  # ArealOpenAI's message text is never None
        interaction.output_message_list = [output_message]
        return completion


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    if isinstance(value, Iterable):
        return [_plain(v) for v in value]
    return value


@dataclass
class Proxy:
    """AReaL's proxy app on a loopback port."""

    addr: str
    admin_api_key: str = DEFAULT_ADMIN_API_KEY


@contextmanager
def running_proxy(model_base_url: str) -> Iterator[Proxy]:
    """AReaL's real proxy app, its model client the scripted one, on 127.0.0.1."""
    server_module = proxy_rollout_server
    server_module._openai_client = ScriptedModelClient(model_base_url)  # /call "initialize" sets these
    server_module._admin_api_key = DEFAULT_ADMIN_API_KEY
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(server_module.app, log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    started = threading.Event()
    while not server.started and thread.is_alive():
        started.wait(0.01)
    try:
        yield Proxy(addr=f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        server_module._openai_client = None


def inference_config(mode: str) -> InferenceEngineConfig:
    """config_8b_airline.yaml's `rollout` where it matters here (the agent section as is)."""
    agent = dataclasses.replace(
        InferenceEngineConfig().agent, mode=mode, admin_api_key=DEFAULT_ADMIN_API_KEY,
        subproc_max_workers=2, turn_discount=1.0, export_style="individual",
    )
    return InferenceEngineConfig(
        experiment_name="tau2-engine-test",
        trial_name="areal",
        max_concurrent_rollouts=16,
        consumer_batch_size=1,
        max_head_offpolicyness=2,
        dump_to_file=False,
        agent=agent,
    )


def remote_engine(mode: str) -> RemoteInfEngine:
    """AReaL's RemoteInfEngine as far as the loader needs it (no inference servers)."""
    engine = RemoteInfEngine(inference_config(mode), backend=None)  # type: ignore[arg-type]
    engine.logger = logging.getLogger("RemoteInfEngine")  # set by initialize(), which starts servers
    return engine


@contextmanager
def workflow_executor(engine: RemoteInfEngine) -> Iterator[WorkflowExecutor]:
    executor = WorkflowExecutor(engine.config, engine)
    executor.initialize(logging.getLogger("WorkflowExecutor"), train_data_parallel_size=1)
    try:
        yield executor
    finally:
        executor.destroy()
