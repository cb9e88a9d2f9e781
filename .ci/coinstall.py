"""Resolve tau2-engine beside the training and serving stacks its users already have.

    python .ci/coinstall.py [REQUIREMENT ...]

Each requirement (default: the stacks in STACKS) is resolved together with this checkout by
`uv pip compile` (nothing is installed) for CPython 3.11 on Linux x86_64, on the package indexes
pip is configured with, taking the best version across all of them as pip does. A requirement
without a version is first pinned to its newest release that resolves on its own here (a new
release whose own dependencies are not on the indexes yet, e.g. vllm 0.34.0 needing a
flashinfer-python release the index lacks, says nothing about tau2-engine: the release
before it is taken, and the line says so). Prints the openai, openai-agents and pydantic each
resolution picks; exits 1 if any stack that resolves on its own does not resolve beside
tau2-engine. Needs `uv` (in the dev extra).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STACKS = (
    "sglang==0.5.10.post1",  # AReaL 1.0.4's inference engine (its cuda/sglang extras)
    "vllm",
    "verifiers",
    "areal==1.0.4",
    "openai-agents",
)
REPORTED = ("openai", "openai-agents", "pydantic")
TARGET = ("--python-version", "3.11", "--python-platform", "x86_64-unknown-linux-gnu")
PIN = re.compile(r"^([A-Za-z0-9._-]+)==(\S+)", re.MULTILINE)


def uv_command() -> list[str]:
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if found is None:
        sys.exit("coinstall: uv not found; pip install uv (it is in tau2-engine's dev extra)")
    return [found]


def pip_index_options() -> list[str]:
    """pip's configured index-url, extra-index-url and find-links, as uv options."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    options: list[str] = []
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in ("index-url", "extra-index-url", "find-links"):
            for item in value.strip("'\"").split():
                options += [f"--{name}", item]
    return options + ["--index-strategy", "unsafe-best-match"]


def compile_requirements(uv: list[str], indexes: list[str], lines: list[str], *extra: str) -> str:
    """The pinned resolution of requirement `lines` (plus any sources and options in `extra`);
    raises CalledProcessError with uv's reason."""
    with tempfile.TemporaryDirectory() as tmp:
        sources = []
        if lines:
            sources.append(Path(tmp, "requirements.in"))
            sources[0].write_text("\n".join(lines) + "\n")
        result = subprocess.run(
            [*uv, "pip", "compile", "--quiet", "--no-header", *TARGET, *indexes, *extra, *map(str, sources)],
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        raise subprocess.CalledProcessError(result.returncode, "uv pip compile", result.stdout, result.stderr)
    return result.stdout


NEWEST_TRIED = 4
"""Releases of a bare-name stack tried, newest first, for one that resolves on its own."""


def releases(name: str) -> list[str]:
    """`name`'s releases on pip's indexes, newest first."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", name], capture_output=True, text=True
    ).stdout
    match = re.search(r"Available versions: (.+)", listed)
    return [v.strip() for v in match.group(1).split(",")] if match else []


def pinned(uv: list[str], indexes: list[str], requirement: str) -> tuple[str, str]:
    """`name` as `name==V`, V its newest release that resolves on its own, and a note on the
    newer ones skipped; a requirement with a version or marker stays as given."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", requirement):
        return requirement, ""
    newest = "==".join(PIN.findall(compile_requirements(uv, indexes, [requirement], "--no-deps"))[0])
    older = [f"{requirement}=={v}" for v in releases(requirement)]
    candidates = [newest] + [stack for stack in older if stack != newest]
    skipped = []
    for stack in candidates[:NEWEST_TRIED]:
        try:
            compile_requirements(uv, indexes, [stack])
        except subprocess.CalledProcessError as exc:
            skipped.append(f"{stack} does not resolve on its own here ({_reason(exc)[:160]})")
            continue
        return stack, "; ".join(skipped)
    return newest, "; ".join(skipped)


def _reason(exc: subprocess.CalledProcessError) -> str:
    return " ".join((exc.stderr or exc.stdout or "").split())


def main(argv: list[str]) -> int:
    requirements = argv or list(STACKS)
    uv = uv_command()
    indexes = pip_index_options()
    print(f"tau2-engine ({ROOT}) resolved beside each stack by uv pip compile {' '.join(TARGET)}")
    print(f"{'beside':<26} {'openai':<10} {'openai-agents':<14} {'pydantic':<10} seconds")
    failed = 0
    for requirement in requirements:
        started = time.perf_counter()
        note = ""
        try:
            stack, note = pinned(uv, indexes, requirement)
            versions = dict(PIN.findall(compile_requirements(uv, indexes, [f"-e {ROOT}", stack])))
        except subprocess.CalledProcessError as exc:
            failed += 1
            print(f"{requirement:<26} DOES NOT RESOLVE: {_reason(exc)}" + (f" [{note}]" if note else ""))
            continue
        openai, agents, pydantic = (versions.get(name, "-") for name in REPORTED)
        seconds = time.perf_counter() - started
        print(f"{stack:<26} {openai:<10} {agents:<14} {pydantic:<10} {seconds:.1f}")
        if note:
            print(f"{'':<26} (newest first: {note})")
    print(f"{len(requirements) - failed} of {len(requirements)} resolved")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
