#!/usr/bin/env bash
# One CI environment: `.ci/suite.sh VENV EXTRAS NAME` makes a fresh venv VENV with
# tau2-engine[EXTRAS] at the versions pinned in .ci/NAME.txt (see .ci/lock.py), then runs lint,
# types, the README Quickstart's demo (events in runs/ci-NAME.jsonl) and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$1 extras=$2 name=$3

python3 -m venv --clear "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q -c ".ci/$name.txt" -e ".[$extras]"
"$venv/bin/python" - "$name" <<'PY'
import sys
from importlib.metadata import version
packages = ("openai-agents", "openai", "pydantic", "mcp", "aenvironment")
def installed(name):
    try:
        return version(name)
    except Exception:
        return "not installed"
print(f"ci: {sys.argv[1]} environment:", ", ".join(f"{p} {installed(p)}" for p in packages))
PY

"$venv/bin/ruff" check engine tests benchmarks
"$venv/bin/mypy" engine
rm -f "runs/ci-$name.jsonl"
"$venv/bin/tau2-engine" run --domain telecom --n-samples 2 --policy oracle --events "runs/ci-$name.jsonl"
# The README's test command:
"$venv/bin/python" -m pytest -q
