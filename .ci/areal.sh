#!/usr/bin/env bash
# The `areal` suite: engine.Tau2Workflow driven by AReaL 1.0.4's real loader, proxy workflow
# (inline and subprocess mode), grouped workflow, workflow executor and proxy app.
# A venv of its own (.venv-areal): AReaL's pins must not constrain the engine's.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-areal
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --upgrade pip
# torch==2.13.0 resolves to the CPU wheel this machine kind serves (pip's find-links);
# the constraint keeps every later install from swapping it for a CUDA build.
echo "torch==2.13.0" > "$VENV/constraints.txt"
# .ci/areal-constraints.txt holds the rest of the environment the suite was verified in.
"$VENV/bin/pip" install -q -c "$VENV/constraints.txt" -c .ci/areal-constraints.txt -e '.[dev]' \
    -r .ci/areal-requirements.txt
"$VENV/bin/pip" install -q --no-deps areal==1.0.4

# A missing AReaL is a failure here, not a skip.
TAU2_ENGINE_REQUIRE_AREAL=1 LITELLM_LOCAL_MODEL_COST_MAP=True AREAL_PROXY_WARN_ONCE=1 \
    "$VENV/bin/python" -m pytest -q -m areal -p no:cacheprovider tests/test_areal.py
