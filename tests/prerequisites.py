"""Prerequisites of test groups that need more than the core install.

A group whose prerequisite is missing skips with the reason, unless the comma-separated
TAU2_ENGINE_REQUIRE names it (`.ci/run` sets it for what its environment installs): then the
group fails, so CI cannot pass by skipping.
"""

from __future__ import annotations

import os

import pytest

from engine.extras import AENV_INSTALL, aenv_installed

REQUIRE_VAR = "TAU2_ENGINE_REQUIRE"


def required(name: str) -> bool:
    return name in {part.strip() for part in os.environ.get(REQUIRE_VAR, "").split(",")}


def require(name: str, missing: str | None) -> None:
    """Skip the calling test module because of `missing` (the reason; None: nothing is
    missing), or fail it when TAU2_ENGINE_REQUIRE names `name`."""
    if missing is None:
        return
    if required(name):
        raise RuntimeError(f"{REQUIRE_VAR} names {name!r}, but {missing}")
    pytest.skip(missing, allow_module_level=True)


def require_aenv() -> None:
    require("aenv", None if aenv_installed() else f"the aenv SDK is not installed ({AENV_INSTALL})")
