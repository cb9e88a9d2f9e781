"""Helpers for the aenv tests: one real `tau2-engine serve-env` on loopback, and checks
that no server process, zygote or listener outlives its run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import httpx
import psutil

from tests.prerequisites import require_aenv

require_aenv()  # every aenv test module imports this one

from aenv import Environment as Environment  # noqa: E402  (re-exported: imported only after the check)

from engine.envs.aenv_local import SERVER_PORT, claim_address, server_command, unclaim_address  # noqa: E402
from engine.envs.aenv_server import PARENT_PID_VAR  # noqa: E402

CLI = [str(Path(os.sys.executable).with_name("tau2-engine"))]


def servers_of(parent_pid: int) -> list[psutil.Process]:
    """Live server processes started by `parent_pid`, and the aenv-local pool's zygote
    (they carry its pid in their env: forked servers inherit the zygote's)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(PARENT_PID_VAR) == str(parent_pid):
                found.append(proc)
    return found


def zygote_and_servers(parent_pid: int) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """The aenv-local pool processes of `parent_pid`: zygotes (its children) and servers."""
    found = servers_of(parent_pid)
    zygotes = [p for p in found if p.ppid() == parent_pid]
    return zygotes, [p for p in found if p not in zygotes]


def listeners(addresses: Iterable[str]) -> list[str]:
    wanted = set(addresses)
    return [f"{c.laddr.ip}:{c.laddr.port}" for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.ip in wanted
            and c.laddr.port == SERVER_PORT]


def wait_until_gone(parent_pid: int, addresses: Iterable[str], timeout: float = 10.0) -> None:
    """The servers must be gone; a process group being reaped gets a short grace."""
    addresses = list(addresses)
    deadline = time.monotonic() + timeout
    while servers_of(parent_pid) or listeners(addresses):
        if time.monotonic() > deadline:
            raise AssertionError(f"left running: {servers_of(parent_pid)} {listeners(addresses)}")
        time.sleep(0.1)


@contextlib.contextmanager
def serving(command: Callable[[str], list[str]], extra_env: dict[str, str] | None = None, *,
            ready: str = "/health", what: str = "serve-env") -> Iterator[str]:
    """A server process on a free loopback address (port 8081): `command(address)` is its
    command line; yields the address once `ready` answers 200, kills its group after."""
    address = claim_address()
    env = {**os.environ, PARENT_PID_VAR: str(os.getpid()), **(extra_env or {})}
    proc = subprocess.Popen(command(address), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"{what} exited with {proc.returncode}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{address}:{SERVER_PORT}{ready}", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"{what} did not start"
            time.sleep(0.1)
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        unclaim_address(address)


def serve_env(extra_env: dict[str, str] | None = None, *,
              protocol: str = "engine") -> contextlib.AbstractContextManager[str]:
    """One `tau2-engine serve-env` on a free loopback address; yields the address."""
    return serving(lambda address: [*server_command(address, SERVER_PORT), "--protocol", protocol],
                   extra_env)
