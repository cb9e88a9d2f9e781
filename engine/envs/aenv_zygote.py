"""A fork server ("zygote") for the aenv-local pool: imports tau2, aenv and the server once,
then forks one `serve-env` server per requested loopback address.

Starting each server as its own interpreter costs ~5 s of CPU in imports; a fork costs
milliseconds. The zygote (`python -m engine.envs.aenv_zygote`, started by the pool in its
own session) stays single-threaded and never starts an event loop, so every fork happens
from a fork-safe state. Each child becomes its own process-group leader and runs exactly
what `tau2-engine serve-env` runs.

Protocol: the pool writes `<address> <port> <log path>` lines to the zygote's stdin; the
zygote answers `started <address> <pid>` and `exit <pid> <code>` lines on its stdout (the
stdout it was started with; its own fd 1 is pointed at stderr, so stray prints from
imports cannot corrupt the protocol).

Lifetimes: the zygote exits (SIGKILLing its children's groups and reaping them; if the
engine is gone, also removing their logs and its own, argv[1]) when its stdin closes or the
engine process is gone; each child's parent watch (PARENT_PID_VAR set
to the zygote's pid) makes it exit when the zygote is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from engine.envs.aenv_server import PARENT_PID_VAR


def _preload() -> None:
    from engine import tau2lib

    tau2lib.load()
    import aenv  # noqa: F401
    import aenv.server.mcp_server  # noqa: F401
    import uvicorn  # noqa: F401

    import engine.envs.aenv_server  # noqa: F401


def _child(address: str, port: int, log_path: str, zygote_pid: int, keep_out: list[int]) -> None:
    """In the forked child: become a server; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in keep_out:
            os.close(fd)
        log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.environ[PARENT_PID_VAR] = str(zygote_pid)
        from engine.envs.aenv_server import serve

        # What `tau2-engine serve-env` does before serving.
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
        code = serve(address, port)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def main() -> None:
    """The zygote's loop (single-threaded: select on stdin and a SIGCHLD wakeup pipe)."""
    engine_pid = int(os.environ[PARENT_PID_VAR])
    zygote_pid = os.getpid()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    _preload()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: dict[int, str] = {}  # pid: log path
    pending = b""
    try:
        while os.getppid() == engine_pid:
            readable, _, _ = select.select([0, wake_r], [], [], 0.5)
            if wake_r in readable:
                os.read(wake_r, 4096)
            _reap(children, out, block=False)
            if 0 not in readable:
                continue
            chunk = os.read(0, 4096)
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                address, port, log_path = line.decode().split(" ", 2)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(address, int(port), log_path, zygote_pid,
                           [wake_r, wake_w, out.fileno()])
                with contextlib.suppress(OSError):  # as the child does: a group from the start
                    os.setpgid(pid, pid)
                children[pid] = log_path
                out.write(f"started {address} {pid}\n")
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        for pid, log_path in children.items():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            if os.getppid() != engine_pid:  # nobody is left to read or remove the logs
                with contextlib.suppress(OSError):
                    os.unlink(log_path)
        if os.getppid() != engine_pid:
            with contextlib.suppress(OSError, IndexError):
                os.unlink(sys.argv[1])
        with contextlib.suppress(OSError):
            _reap(children, out, block=True)


def _reap(children: dict[int, str], out: IO[str], *, block: bool) -> None:
    for pid in list(children):
        done, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        if done:
            del children[pid]
            with contextlib.suppress(OSError):
                out.write(f"exit {pid} {os.waitstatus_to_exitcode(status)}\n")


# -- the pool's side -------------------------------------------------------------------


@dataclass(eq=False)
class Child:
    """One forked server as the pool sees it; `pid` is known once the zygote forked it."""

    address: str
    zygote: Zygote
    pid: int | None = None
    returncode: int | None = None
    abandoned: bool = False

    def kill_group(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def alive(self) -> bool:
        """Still starting or running (a child of a dead zygote is exiting: not alive)."""
        return self.returncode is None and self.zygote.running()


@dataclass(eq=False)
class Zygote:
    """The zygote process and a reader thread that records its children's pids and exits."""

    process: subprocess.Popen[bytes]
    log_path: Path
    _pending: deque[Child] = field(default_factory=deque)  # asked for, in request order
    _by_pid: dict[int, Child] = field(default_factory=dict)
    _eof: bool = False
    _write_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, env: dict[str, str], log_path: Path) -> Zygote:
        """Start a zygote (blocking: fork and exec) logging to `log_path`."""
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "engine.envs.aenv_zygote", str(log_path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
        zygote = cls(process, log_path)
        threading.Thread(target=zygote._read, name="aenv-zygote-reader", daemon=True).start()
        return zygote

    def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            self._read_lines(self.process.stdout)
        finally:
            self._eof = True  # the zygote is gone (or speaks nonsense): replaced on demand

    def _read_lines(self, lines: IO[bytes]) -> None:
        for raw in lines:
            kind, *rest = raw.decode().split() or [""]
            if kind == "started":  # the zygote answers requests in order
                child = self._pending.popleft()
                child.pid = int(rest[1])
                self._by_pid[child.pid] = child
                if child.abandoned:  # stopped before its pid was known
                    child.kill_group()
            elif kind == "exit":
                exited = self._by_pid.pop(int(rest[0]), None)
                if exited is not None:
                    exited.returncode = int(rest[1])

    def running(self) -> bool:
        return not self._eof and self.process.poll() is None

    def spawn(self, address: str, port: int, log_path: str) -> Child:
        """Ask for a server; its pid arrives on the reader thread."""
        child = Child(address, self)
        assert self.process.stdin is not None
        try:
            with self._write_lock:
                self._pending.append(child)
                self.process.stdin.write(f"{address} {port} {log_path}\n".encode())
                self.process.stdin.flush()
        except OSError:
            self._eof = True  # the zygote is gone; the child reads as dead
        return child

    def abandon(self, child: Child) -> None:
        """The pool is done with `child`: kill it, now or when its pid arrives."""
        child.abandoned = True
        child.kill_group()

    def close(self, timeout: float) -> None:
        """Close stdin (the zygote then kills and reaps its children and exits); SIGKILL
        after `timeout`. Blocking."""
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_now()

    def kill_now(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(1.0)


if __name__ == "__main__":
    main()
    sys.stderr.flush()
    os._exit(0)  # interpreter teardown of everything preloaded takes ~1 s and does nothing
