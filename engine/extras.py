"""Optional extras of tau2-engine: whether one is installed, and the one line that says how to
install it when something needs it. The core never imports an extra's packages."""

from __future__ import annotations

import importlib.util

from engine.errors import ConfigError

AENV_INSTALL = "pip install 'tau2-engine[aenv]'"


def aenv_installed() -> bool:
    """The AEnvironment SDK (`aenv`) is importable. The repository's own aenv/ folder (the
    image's build files) is a namespace package when the checkout is on sys.path; it is not
    the SDK."""
    spec = importlib.util.find_spec("aenv")
    return spec is not None and spec.origin is not None


def require_aenv(what: str) -> None:
    """Raise the one-line ConfigError that says how to install the aenv extra."""
    if not aenv_installed():
        raise ConfigError(f"{what} needs the AEnvironment SDK, which is not installed: {AENV_INSTALL}")
