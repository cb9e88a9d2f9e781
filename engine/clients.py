"""Pooled OpenAI-compatible clients, owned by whoever closes them (an Engine, its judge,
a served environment).

A `ClientPool` holds `httpx.AsyncClient`s sized to its owner's call limiter and the
`AsyncOpenAI` clients built on them, cached by (base URL, key, timeout): episodes with their
own key (AReaL gives each session one) get their own client sharing the pool's
connections. A large pool is split into one HTTP client per `SHARD_CONNECTIONS` of its
size, handed out in turn: httpcore walks every connection of a pool on each request (expiry
and readability checks), which with 1,000 requests in flight through one pool was a quarter
of the engine's CPU (benchmarks/bench_model_overhead.py). A caller's own HTTP client
(AReaL's inline mode hands the workflow one) is used as given and never closed here. The
SDK's own retries are off (`max_retries=0`): the engine retries and records each retry
(engine.retry).
"""

from __future__ import annotations

import collections
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

CachedKey = tuple[str, str, float]

SHARD_CONNECTIONS = 64
"""Connections per HTTP client of a `ClientPool` (see the module's docstring)."""


@contextlib.contextmanager
def using_http_client(client: httpx.AsyncClient | None) -> Iterator[None]:
    """Model calls of episodes started inside this block go through `client` (AReaL's
    inline mode hands the workflow its own `httpx.AsyncClient`)."""
    token = _http_client_override.set(client)
    try:
        yield
    finally:
        _http_client_override.reset(token)


def http_client_override() -> httpx.AsyncClient | None:
    """The HTTP client set by `using_http_client` in this context, if any."""
    return _http_client_override.get()


class ClientPool:
    """AsyncOpenAI clients sharing one connection pool; closed by its owner (`aclose`).

    Clients are cached per HTTP client (the pool's own, or a caller's, held weakly so a
    closed caller's client is forgotten with it) and per (base URL, key, timeout); at most
    `max_clients` per HTTP client, least recently used dropped first."""

    def __init__(self, max_connections: int, *, max_clients: int = 4096) -> None:
        self.max_connections = max_connections
        self.max_clients = max_clients
        self.shards = max(1, -(-max_connections // SHARD_CONNECTIONS))
        self._http: list[httpx.AsyncClient] = []
        self._turn = 0
        self._clients: weakref.WeakKeyDictionary[
            httpx.AsyncClient, collections.OrderedDict[CachedKey, AsyncOpenAI]
        ] = weakref.WeakKeyDictionary()

    @property
    def http_clients(self) -> list[httpx.AsyncClient]:
        """The pool's own HTTP clients opened so far."""
        return list(self._http)

    def http_client(self) -> httpx.AsyncClient:
        """The pool's next HTTP client in turn (opened on first use). Each may hold up to
        `max_connections`: clients are handed out per episode, not per request, so a
        tighter share could queue one client's requests while another's sit idle; the
        owner's call limiter bounds them together."""
        shard = self._turn % self.shards
        self._turn += 1
        if shard == len(self._http):
            limits = httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            )
            timeout = httpx.Timeout(600.0, connect=10.0)
            self._http.append(httpx.AsyncClient(limits=limits, timeout=timeout))
        return self._http[shard]

    def client(
        self, endpoint: Endpoint, http_client: httpx.AsyncClient | None = None
    ) -> AsyncOpenAI:
        http = http_client or self.http_client()
        cached = self._clients.get(http)
        if cached is None:
            cached = self._clients[http] = collections.OrderedDict()
        key = (endpoint.base_url, endpoint.api_key, endpoint.timeout_s)
        found = cached.get(key)
        if found is not None:
            cached.move_to_end(key)
            return found
        found = AsyncOpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key,
            http_client=cast(Any, http),  # openai 3 types it as httpx2's client; takes httpx's too
            max_retries=0,
            timeout=endpoint.timeout_s,
        )
        cached[key] = found
        if len(cached) > self.max_clients:
            cached.popitem(last=False)
        return found

    async def aclose(self) -> None:
        """Close the pool's own connections (a caller's HTTP client stays the caller's).
        A later call opens a new pool, which its owner closes again."""
        self._clients.clear()
        own, self._http, self._turn = self._http, [], 0
        for http in own:
            await http.aclose()
