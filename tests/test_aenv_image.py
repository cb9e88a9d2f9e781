"""The `aenv/` folder is an AEnvironment env project (`config.json`, `Dockerfile`,
`requirements.txt`, `src/`) that the real `aenv build` builds, and the image's command
serves tau2-engine's env.

No Docker engine runs here: `aenv build` runs for real up to docker-py's build call, which
goes to a stand-in engine (`tests/fake_docker.py`) that keeps the build context it is
sent. The context is checked the way the Dockerfile uses it: `requirements.txt` resolves
from it (the engine's wheel in `wheels/`), and the command (`python -m aenv.main
/app/src`) serves the official protocol plus tau2-engine's additions.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.prerequisites import require_aenv

require_aenv()  # before the engine's aenv modules, which need the aenv extra

from engine.config import AenvConfig, plan_episodes  # noqa: E402
from engine.envs.aenv_local import SERVER_PORT, local_client  # noqa: E402
from tests.aenv_helpers import serving  # noqa: E402
from tests.fake_docker import FakeDocker  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
AENV_DIR = ROOT / "aenv"
AENV_CLI = Path(sys.executable).with_name("aenv")


@pytest.fixture(scope="module")
def context_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of aenv/ with the engine's wheel built into it (the documented first step),
    so `aenv build` rewriting config.json leaves the repository alone."""
    work = tmp_path_factory.mktemp("aenv-build") / "aenv"
    shutil.copytree(AENV_DIR, work, ignore=shutil.ignore_patterns("wheels", "__pycache__"))
    (work / "src" / "__pycache__").mkdir()
    (work / "src" / "__pycache__" / "stale.cpython-311.pyc").write_bytes(b"\0")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "wheels"), str(ROOT)],
        capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    return work


def test_aenv_build_sends_the_documented_layout_as_its_context(context_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".aenv").mkdir(parents=True)
    socket_path = tmp_path / "docker.sock"
    (home / ".aenv" / "cli_config.json").write_text(json.dumps({"build_config": {
        "type": "local", "build_args": {"socket": f"unix://{socket_path}"},
        "registry": {"host": "docker.io", "username": "", "password": "", "namespace": "tau2-engine"},
    }}))
    with FakeDocker(socket_path).running() as docker:
        proc = subprocess.run([str(AENV_CLI), "build"], cwd=context_dir,
                              env={**os.environ, "HOME": str(home)},
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Build completed successfully" in proc.stdout
    (build,) = docker.builds
    image = "docker.io/tau2-engine/tau2-engine-env:0.1.0"
    assert build.params["t"] == image and build.params["dockerfile"] == "Dockerfile"
    names = build.names()
    print("\nbuild context sent by `aenv build`:\n  " + "\n  ".join(names))
    assert names == sorted([".dockerignore", "Dockerfile", "config.json", "requirements.txt",
                            "src/tau2_engine_env.py", "wheels/tau2_engine-0.1.0-py3-none-any.whl"])
    assert b"python3 -m aenv.main /app/src" in build.read("Dockerfile")
    config = json.loads((context_dir / "config.json").read_text())
    assert config["name"] == "tau2-engine-env" and config["artifacts"][0]["content"] == image


def test_the_context_requirements_resolve_from_its_own_wheel(context_dir: Path, tmp_path: Path) -> None:
    """What the Dockerfile's `pip install -r /app/requirements.txt` resolves (dependencies
    from the index, the engine from the context)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--ignore-installed",
         "--report", str(tmp_path / "report.json"), "-r", str(context_dir / "requirements.txt")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    chosen = {i["metadata"]["name"]: i["download_info"]["url"] for i in report["install"]}
    assert chosen["tau2-engine"].startswith("file://")
    assert chosen["tau2-engine"].endswith("/wheels/tau2_engine-0.1.0-py3-none-any.whl")
    assert "aenvironment" in chosen


def image_command(extra_env: dict[str, str]) -> contextlib.AbstractContextManager[str]:
    """The image's CMD, `python3 -m aenv.main /app/src`, on a loopback address."""
    return serving(lambda address: [
        sys.executable, "-m", "aenv.main", str(AENV_DIR / "src"), "--host", address,
        "--port", str(SERVER_PORT), "--name", "tau2-engine-env"],
        extra_env, ready="/functions/list", what="aenv.main")


@pytest.mark.anyio
async def test_the_images_command_serves_tau2_engines_env_from_src() -> None:
    spec = plan_episodes(domain="telecom", limit=1)[0]
    with image_command({"TAU2_DOMAIN": "telecom", "TAU2_TASK_ID": spec.task_id}) as address:
        env = local_client(address, AenvConfig(env_name="tau2-engine-env@0.1.0"))
        try:
            await env.initialize()
            listing = await env.list_functions()
            tools = [t["name"] for t in await env.list_tools()]
            info = await env.call_function("tau2_get_task_info", {})
            await env.call_function("tau2_done", {})
            reward = await env.call_reward({})
        finally:
            await env.release()
    functions = {f["name"] for f in listing["functions"]}
    assert {"tau2_get_system_prompt", "tau2_get_task_info", "tau2_get_available_tools",
            "tau2_get_status", "tau2_send_message", "tau2_done", "tau2_reset"} <= functions
    assert tools[-1] == "tau2-engine-env@0.1.0/done" and len(tools) == len(info["tools"])
    assert (info["task_id"], info["solo_mode"], info["max_steps"]) == (spec.task_id, True, 50)
    assert reward["done"] is True and reward["termination_reason"] == "agent_stop"
