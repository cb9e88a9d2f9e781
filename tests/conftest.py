from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest

from engine import tau2lib
from tests.helpers import Compass

tau2lib.load()  # import tau2 once per test process (~3 s), before any test times itself


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def compass() -> Compass:
    return Compass()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not Compass.rows:
        return
    terminalreporter.section("fault injection (COMPASS): faults injected / episodes lost")
    for what, injected, lost in Compass.rows:
        terminalreporter.write_line(f"{what}: {injected} / {lost}")
    total = sum(r[1] for r in Compass.rows), sum(r[2] for r in Compass.rows)
    terminalreporter.write_line(f"total: {total[0]} faults injected / {total[1]} episodes lost")
