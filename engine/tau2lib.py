"""The tau2 library, imported once per process, without changing the process.

litellm (a tau2 dependency) fetches a model cost map from the network on import unless
LITELLM_LOCAL_MODEL_COST_MAP is set, so `load` sets it first. tau2 logs through loguru,
at DEBUG on every tool call; as loguru asks of a library, `load` disables the records of
the `tau2` package (`logger.enable("tau2")` turns them back on) and leaves every handler of
the process alone. The CLI, which owns its process, calls `route_logs_to_logging` to send
tau2's warnings into the standard logging tree (logger `tau2`).
Every module of the engine that needs tau2 imports it through here.
"""

from __future__ import annotations

import logging
import os
import threading
from types import ModuleType

_lock = threading.Lock()
_loaded: ModuleType | None = None
_stdlib_logger = logging.getLogger("tau2")
_routed = False


def _forward_loguru(message: object) -> None:
    record = message.record  # type: ignore[attr-defined]
    _stdlib_logger.log(record["level"].no, "%s", record["message"])


def load() -> ModuleType:
    """Import tau2 (idempotent, thread-safe) and return its registry module."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            from loguru import logger

            # tau2's import-time notices (a missing .env file, its registry) say nothing
            # about the engine's runs: off in every case.
            logger.disable("tau2")
            import tau2.registry

            if _routed:
                logger.enable("tau2")
            _loaded = tau2.registry
    return _loaded


def route_logs_to_logging(level: str = "WARNING") -> None:
    """For a program that owns its process (the CLI, a worker): loguru's handlers are
    replaced by one that sends records at `level` and above (tau2's) to the standard
    logger `tau2`."""
    global _routed
    from loguru import logger

    with _lock:
        _routed = True
        logger.remove()
        logger.add(_forward_loguru, level=level, format="{message}")
        if _loaded is not None:
            logger.enable("tau2")
