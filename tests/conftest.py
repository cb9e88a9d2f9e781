from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

from engine import tau2lib

tau2lib.load()  # import tau2 once per test process (~3 s), before any test times itself


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
