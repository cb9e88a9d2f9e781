"""The `aenv-local` backend: a pool of real aenv servers on this machine.

Each server runs what `tau2-engine serve-env` runs, in its own process (group), on its own
loopback address (127.0.0.X) and port 8081 (the aenv client fixes the data-plane port),
reached with the unmodified `aenv.Environment` client as if it were a sandbox
(`DUMMY_INSTANCE_IP`: no scheduler). The pool size is the engine's environment limit.
Servers are forked from one zygote per pool (`aenv_zygote`), which pays the imports once.

Servers start on first demand, serve episode after episode (`tau2_reset`), are checked
before reuse (process alive; after a failed episode also `/health`), and are replaced when
one dies (the zygote too). `aclose()` stops them all and the zygote; an `atexit` hook and
the parent watches (the zygote exits when this process is gone, each server when the
zygote is) cover the exits `aclose()` cannot.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx

from engine.envs.aenv_server import PARENT_PID_VAR
from engine.envs.aenv_session import AenvSession, ToolCache, open_session, quiet_sdk_logging
from engine.envs.aenv_zygote import Child, Zygote
from engine.errors import EnvError

if TYPE_CHECKING:
    from aenv import Environment

    from engine.config import AenvConfig, EpisodeSpec
    from engine.events import EventLog

SERVER_PORT = 8081
"""aenv clients reach a sandbox's data plane on this port, so each server needs its own
address rather than its own port."""
ADDRESS_RANGE = range(10, 251)
"""127.0.0.10 .. 127.0.0.250."""
STOP_GRACE_S = 1.0

_claimed: set[str] = set()
_claim_lock = threading.Lock()


def _bindable(address: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, SERVER_PORT))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                return False
            raise
        return True


def claim_address() -> str:
    """A loopback address whose port 8081 is free, not used by this process (scanning from
    a random start, so concurrent runs on one machine rarely collide)."""
    start = random.randrange(len(ADDRESS_RANGE))
    with _claim_lock:
        for i in range(len(ADDRESS_RANGE)):
            address = f"127.0.0.{ADDRESS_RANGE[(start + i) % len(ADDRESS_RANGE)]}"
            if address not in _claimed and _bindable(address):
                _claimed.add(address)
                return address
    raise EnvError(f"no free loopback address in 127.0.0.{ADDRESS_RANGE[0]}-{ADDRESS_RANGE[-1]} "
                   f"with port {SERVER_PORT} free")


def unclaim_address(address: str) -> None:
    with _claim_lock:
        _claimed.discard(address)


def server_command(host: str, port: int) -> list[str]:
    script = Path(sys.executable).with_name("tau2-engine")
    found = str(script) if script.exists() else shutil.which("tau2-engine")
    fallback = [sys.executable, "-c", "from engine.cli import entrypoint; entrypoint()"]
    base = [found] if found else fallback
    return [*base, "serve-env", "--host", host, "--port", str(port)]


def _log_file(name: str) -> str:
    fd, path = tempfile.mkstemp(prefix=f"tau2-aenv-{name}-", suffix=".log")
    os.close(fd)
    return path


def local_client(address: str, config: AenvConfig) -> Environment:
    """The stock aenv client, pointed at one local server the way DUMMY_INSTANCE_IP does
    (set per client here: several servers run side by side)."""
    from aenv import Environment

    env = Environment(config.env_name, aenv_url=f"http://{address}", skip_for_healthy=True,
                      timeout=config.call_timeout_s)
    env.dummy_instance_ip = address
    return env


@dataclass(eq=False)
class LocalServer:
    """One forked `serve-env` server and its client."""

    address: str
    child: Child
    log_path: Path
    env: Environment | None = None
    tools: ToolCache = field(default_factory=ToolCache.empty)
    episodes: int = 0

    def alive(self) -> bool:
        return self.child.alive()

    def log_tail(self, limit: int = 1500) -> str:
        tail = _tail(self.log_path, limit)
        if not self.child.zygote.running():
            tail += f"\n(zygote gone, exit code {self.child.zygote.process.returncode}):\n"
            tail += _tail(self.child.zygote.log_path, limit)
        return tail

    def terminate(self) -> None:
        if self.child.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.child.pid, signal.SIGTERM)

    def kill_now(self) -> None:
        self.child.kill_group()


def _tail(path: Path, limit: int) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


async def _until(condition: Callable[[], bool], within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await anyio.sleep(0.02)
    return True


class ServerPool:
    """At most `size` servers; idle ones are reused, dead ones replaced."""

    def __init__(self, size: int, config: AenvConfig) -> None:
        self.size = size
        self.config = config
        self._slots = anyio.Semaphore(size)
        self._idle: list[LocalServer] = []
        self._servers: set[LocalServer] = set()  # every process started and not yet reaped
        self._zygote: Zygote | None = None
        self._zygote_lock = anyio.Lock()
        self.started = 0
        self._atexit = False
        self._health_client: httpx.AsyncClient | None = None

    @property
    def servers(self) -> list[LocalServer]:
        return list(self._servers)

    async def acquire(self) -> LocalServer:
        await self._slots.acquire()
        try:
            while self._idle:
                server = self._idle.pop()
                if server.alive():
                    return server
                await self._stop(server)  # died while idle: replaced below
            return await self._start()
        except BaseException:
            self._slots.release()
            raise

    async def release(self, server: LocalServer, *, healthy: bool) -> None:
        try:
            if healthy and server.alive():
                self._idle.append(server)
            else:
                await self._stop(server)
        finally:
            self._slots.release()

    async def healthy(self, server: LocalServer) -> bool:
        if not server.alive():
            return False
        if self._health_client is None:
            # One client for the pool: building one costs ~20 ms of blocking SSL setup.
            self._health_client = httpx.AsyncClient(timeout=2.0)
        try:
            reply = await self._health_client.get(f"http://{server.address}:{SERVER_PORT}/health")
            status = reply.json().get("data", {}).get("status") if reply.status_code == 200 else None
            return bool(status == "success")
        except (httpx.HTTPError, ValueError):
            return False

    async def _start(self) -> LocalServer:
        last: EnvError | None = None
        for _ in range(3):  # another run may take the address between probe and bind
            server = await self._spawn(claim_address())
            try:
                await self._wait_ready(server)
                server.env = local_client(server.address, self.config)
                await server.env.initialize()
                return server
            except EnvError as exc:
                last, exited = exc, not server.alive()
                await self._stop(server)
                if not exited:
                    raise
            except BaseException:
                await self._stop(server)
                raise
        assert last is not None
        raise last

    async def zygote(self) -> Zygote:
        """The running zygote, started (again, if the last one died) on demand."""
        async with self._zygote_lock:
            if self._zygote is not None and not self._zygote.running():
                await self._close_zygote()
            if self._zygote is None:
                if not self._atexit:
                    atexit.register(self.kill_now)
                    self._atexit = True
                env = dict(os.environ)
                env.pop("TAU2_TASK_ID", None)  # the pool's servers start without an episode
                env[PARENT_PID_VAR] = str(os.getpid())
                env.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                # numpy's OpenBLAS would start a thread at import; the zygote forks single-threaded.
                env["OPENBLAS_NUM_THREADS"] = "1"
                log = Path(_log_file("zygote"))
                self._zygote = await anyio.to_thread.run_sync(Zygote.start, env, log)
            return self._zygote

    async def _close_zygote(self) -> None:
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(zygote.close, 2 * STOP_GRACE_S)
            zygote.log_path.unlink(missing_ok=True)

    async def _spawn(self, address: str) -> LocalServer:
        try:
            zygote = await self.zygote()
            log_path = Path(_log_file(address))
        except BaseException:
            unclaim_address(address)
            raise
        server = LocalServer(address, zygote.spawn(address, SERVER_PORT, str(log_path)), log_path)
        self._servers.add(server)
        self.started += 1
        return server

    async def _wait_ready(self, server: LocalServer) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while not await self.healthy(server):
            if not server.alive():
                raise EnvError(f"aenv server {server.address} exited with code "
                               f"{server.child.returncode} while starting:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise EnvError(f"aenv server {server.address} not healthy after "
                               f"{self.config.startup_timeout_s:.0f}s:\n{server.log_tail()}")
            await anyio.sleep(0.1)

    async def _stop(self, server: LocalServer) -> None:
        """Close the client, then the process group: SIGTERM, SIGKILL after a grace."""
        with anyio.CancelScope(shield=True):
            if server.env is not None and server.alive():
                with anyio.move_on_after(STOP_GRACE_S), contextlib.suppress(Exception):
                    await server.env.release()
            server.env = None
            # A fork still in flight has no pid yet: abandoning kills it once it arrives.
            await _until(lambda: server.child.pid is not None or not server.alive(), STOP_GRACE_S)
            server.terminate()
            if not await _until(lambda: not server.alive(), STOP_GRACE_S):
                server.kill_now()
                await _until(lambda: not server.alive(), STOP_GRACE_S)
            server.child.zygote.abandon(server.child)  # also anything the server started
            self._servers.discard(server)
            unclaim_address(server.address)
            server.log_path.unlink(missing_ok=True)

    async def aclose(self) -> None:
        self._idle.clear()
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for server in list(self._servers):
                    tg.start_soon(self._stop, server)
            await self._close_zygote()
            if self._health_client is not None:
                await self._health_client.aclose()
                self._health_client = None
        if self._atexit:
            atexit.unregister(self.kill_now)
            self._atexit = False

    def kill_now(self) -> None:
        """Last resort (interpreter exit): SIGKILL every server's process group and the
        zygote."""
        for server in list(self._servers):
            server.kill_now()
            unclaim_address(server.address)
        if self._zygote is not None:
            self._zygote.kill_now()


class AenvLocalBackend:
    """Episodes on a pool of local aenv servers."""

    name = "aenv-local"

    def __init__(self, size: int, config: AenvConfig, events: EventLog | None = None) -> None:
        quiet_sdk_logging()
        self.pool = ServerPool(size, config)
        self._events = events

    def _emit(self, event: str, **fields: object) -> None:
        if self._events is not None:
            self._events.emit(event, backend=self.name, **fields)

    @asynccontextmanager
    async def session(self, spec: EpisodeSpec) -> AsyncIterator[AenvSession]:
        started = time.perf_counter()
        server = await self.pool.acquire()
        healthy = False
        try:
            assert server.env is not None
            session = await open_session(server.env, server.address, spec, reset=True,
                                         cache=server.tools)
            server.episodes += 1
            self._emit("env_acquire", latency_s=time.perf_counter() - started,
                       address=server.address, env_name=self.pool.config.env_name,
                       server_episodes=server.episodes)
            yield session
            healthy = True
        finally:
            released = time.perf_counter()
            with anyio.CancelScope(shield=True):
                if not healthy:  # the episode failed: keep the server only if it answers
                    with anyio.move_on_after(3):
                        healthy = await self.pool.healthy(server)
                await self.pool.release(server, healthy=healthy)
            self._emit("env_release", latency_s=time.perf_counter() - released,
                       address=server.address, env_name=self.pool.config.env_name, healthy=healthy)

    async def aclose(self) -> None:
        await self.pool.aclose()
