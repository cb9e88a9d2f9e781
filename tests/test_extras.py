"""The aenv extra: the core never imports aenv, and what needs it says how to install it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from engine.config import EngineConfig
from engine.engine import make_backend
from engine.errors import ConfigError
from engine.extras import AENV_INSTALL, aenv_installed

# `python -c` with the aenv SDK made unimportable, then the CLI's own main().
WITHOUT_AENV = (
    "import sys; sys.modules['aenv'] = None; from engine.cli import main; sys.exit(main(sys.argv[1:]))"
)


def without_aenv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_AENV, *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "args",
    [["run", "--backend", "aenv-local", "--limit", "1"], ["run", "--backend", "aenv"], ["serve-env"]],
    ids=["aenv-local", "aenv", "serve-env"],
)
def test_aenv_commands_without_the_sdk_say_how_to_install_it_in_one_line(args: list[str]) -> None:
    done = without_aenv(*args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and AENV_INSTALL in done.stderr, done.stderr
    assert done.stdout == ""


@pytest.mark.skipif(aenv_installed(), reason="the aenv SDK is installed here; covered by the test above")
def test_the_real_cli_without_the_aenv_extra_exits_2_with_the_install_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "run", "--backend", "aenv-local"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert (done.returncode, done.stderr) == (
        2,
        "tau2-engine: error: --backend aenv-local needs the AEnvironment SDK, which is not installed: "
        f"{AENV_INSTALL}\n",
    )


def test_engine_api_without_the_sdk_raises_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aenv", None)
    import anyio

    with pytest.raises(ConfigError, match=r"backend 'aenv-local' needs .*tau2-engine\[aenv\]"):
        make_backend(EngineConfig(backend="aenv-local"), anyio.CapacityLimiter(1))


def test_a_local_run_imports_nothing_of_aenv() -> None:
    code = (
        "import sys; from engine.cli import main; code = main(['run', '--domain', 'mock', '--limit', '2']); "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('aenv', 'fastmcp') "
        "or m.startswith('engine.envs.aenv')); print('LOADED', loaded); sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout
