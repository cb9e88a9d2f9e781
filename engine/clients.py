"""Pooled OpenAI-compatible clients, one connection pool per event loop.

An `httpx.AsyncClient` (ours, sized to the engine's model-call limiter, or the caller's
own, e.g. AReaL's) is shared by one `AsyncOpenAI` per (base URL, HTTP client). Episodes
with their own key (AReaL gives each session one) get a view of that client with the key
swapped, sharing its pool. The SDK's own retries are off (`max_retries=0`): the engine
retries and records each retry (engine.retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, cast

import httpx
from openai import AsyncOpenAI

from engine.config import Endpoint

_http_client_override: ContextVar[httpx.AsyncClient | None] = ContextVar(
    "tau2_engine_http_client", default=None
)


@contextlib.contextmanager
def using_http_client(client: httpx.AsyncClient | None) -> Iterator[None]:
    """Model calls of episodes started inside this block go through `client` (AReaL's
    inline mode hands the workflow its own `httpx.AsyncClient`)."""
    token = _http_client_override.set(client)
    try:
        yield
    finally:
        _http_client_override.reset(token)


class ClientPool:
    """AsyncOpenAI clients of one event loop, sharing connection pools."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._http: httpx.AsyncClient | None = None
        self._clients: dict[tuple[str, int], AsyncOpenAI] = {}

    def http_client(self) -> httpx.AsyncClient:
        if self._http is None:
            limits = httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            )
            timeout = httpx.Timeout(600.0, connect=10.0)
            self._http = httpx.AsyncClient(limits=limits, timeout=timeout)
        return self._http

    def client(
        self, endpoint: Endpoint, http_client: httpx.AsyncClient | None = None
    ) -> AsyncOpenAI:
        http = http_client or self.http_client()
        key = (endpoint.base_url, id(http))
        base = self._clients.get(key)
        if base is None:
            base = AsyncOpenAI(
                base_url=endpoint.base_url,
                api_key=endpoint.api_key,
                http_client=cast(Any, http),  # openai 3 types it as httpx2's client; takes httpx's too
                max_retries=0,
                timeout=endpoint.timeout_s,
            )
            self._clients[key] = base
        if base.api_key != endpoint.api_key or base.timeout != endpoint.timeout_s:
            return base.with_options(api_key=endpoint.api_key, timeout=endpoint.timeout_s)
        return base

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._clients.clear()


def http_client_override() -> httpx.AsyncClient | None:
    """The HTTP client set by `using_http_client` in this context, if any."""
    return _http_client_override.get()


class LoopPools:
    """One ClientPool per running event loop (clients and pools belong to a loop)."""

    def __init__(self, max_connections: int = 256) -> None:
        self.max_connections = max_connections
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ClientPool] = (
            weakref.WeakKeyDictionary()
        )

    async def aclose(self) -> None:
        """Close the running loop's pool (its connections belong to this loop)."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.aclose()

    def pool(self) -> ClientPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = ClientPool(self.max_connections)
        return pool
