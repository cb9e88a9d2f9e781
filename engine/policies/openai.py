"""The `openai` policy: the Agents SDK's chat-completions model (as the original example
sets with `set_default_openai_api("chat_completions")`) on an OpenAI-compatible endpoint
(AReaL proxy, vLLM, SGLang, OpenAI), through the engine's pooled clients.

Requests carry what stock tau2's agents send (tau2 `generate()` through litellm): the
SDK builds them from the agent's settings (see `engine.agent.model_settings`), and
`Tau2Messages` gives every assistant message a `content` and drops the `strict: false`
newer SDKs put on every tool. It sends the request with the client's public `post`, as
`chat.completions.create` would after `async_maybe_transform`, which only drops unset
parameters from requests like these (JSON already) but walks every message and tool of the
conversation against their TypedDicts on every call: a quarter of an episode's CPU with
long conversations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from openai import AsyncOpenAI, NotGiven, Omit
from openai.types.chat import ChatCompletion

from engine.clients import ClientPool, http_client_override
from engine.config import EpisodeSpec, require_endpoint
from engine.sdk import Model, chat_completions_model


def tau2_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The chat messages with `content: ""` on assistant messages that only call tools.
    Stock tau2 (through litellm) and the SDK leave `content` out there, which
    llama-cpp-python's server answers with a 500, as it does a null `content`; an empty
    string means the same to OpenAI, vLLM and SGLang, and to chat templates."""
    out = []
    for message in messages:
        message = dict(message)
        if message.get("role") == "assistant" and message.get("content") is None:
            message["content"] = ""
        out.append(message)
    return out


def tau2_tools(tools: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The tools without `"strict": false`, which newer Agents SDKs add to every function
    and stock tau2 does not send (false is the API's default)."""
    out = []
    for tool in tools:
        tool = dict(tool)
        function = tool.get("function")
        if isinstance(function, Mapping) and function.get("strict") is False:
            tool["function"] = {k: v for k, v in function.items() if k != "strict"}
        out.append(tool)
    return out


REQUEST_OPTIONS = {"extra_headers": "headers", "extra_query": "params", "extra_body": "extra_json"}
"""`create`'s keyword arguments that are request options, not body (openai's
`make_request_options`), and their `RequestOptions` names."""


def _given(value: Any) -> bool:
    return not isinstance(value, NotGiven | Omit)


class _Completions:
    def __init__(self, client: AsyncOpenAI) -> None:
        self._client = client

    async def create(self, **request: Any) -> Any:
        request["messages"] = tau2_messages(request["messages"])
        if isinstance(request.get("tools"), list):
            request["tools"] = tau2_tools(request["tools"])
        if request.get("stream") is True:  # never asked by the engine: the SDK's own path
            return await self._client.chat.completions.create(**request)
        options: dict[str, Any] = {}
        for name, option in REQUEST_OPTIONS.items():
            value = request.pop(name, None)
            if value is not None and _given(value):
                options[option] = value
        timeout = request.pop("timeout", None)
        if timeout is not None and _given(timeout):
            options["timeout"] = timeout
        body = {key: value for key, value in request.items() if _given(value)}
        return await self._client.post(
            "/chat/completions", body=body, cast_to=ChatCompletion, options=cast(Any, options)
        )


class _Chat:
    def __init__(self, client: AsyncOpenAI) -> None:
        self.completions = _Completions(client)


class Tau2Messages:
    """An AsyncOpenAI whose chat completions are sent with tau2-shaped messages; every
    other attribute is the wrapped client's."""

    def __init__(self, client: AsyncOpenAI) -> None:
        self._client = client
        self.chat = _Chat(client)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class OpenAIPolicy:
    """Builds `openai` policy models on its owner's connection pool."""

    def __init__(self, clients: ClientPool) -> None:
        self.clients = clients

    def model(self, spec: EpisodeSpec) -> Model:
        endpoint = require_endpoint(spec.policy)
        client = self.clients.client(endpoint, http_client_override())
        return chat_completions_model(endpoint.model, cast(AsyncOpenAI, Tau2Messages(client)))
