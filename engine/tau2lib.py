"""The tau2 library, imported once per process and made quiet.

litellm (a tau2 dependency) fetches a model cost map from the network on import unless
LITELLM_LOCAL_MODEL_COST_MAP is set, and tau2 logs through loguru at DEBUG. Every module
of the engine that needs tau2 imports it through here.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from types import ModuleType

_lock = threading.Lock()
_loaded: ModuleType | None = None
_stdlib_logger = logging.getLogger("tau2")


def _forward_loguru(message: object) -> None:
    record = message.record  # type: ignore[attr-defined]
    level = record["level"].no
    _stdlib_logger.log(level, "%s", record["message"])


def load() -> ModuleType:
    """Import tau2 (idempotent, thread-safe) and return its registry module."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            from loguru import logger

            logger.remove()
            # tau2 warns at import about a missing .env file and model-specific settings;
            # those say nothing about the engine's runs, so import-time output is demoted.
            import_sink = logger.add(_forward_loguru, level="ERROR", format="{message}")
            with contextlib.redirect_stdout(io.StringIO()) as banner:
                import tau2.registry
            logger.remove(import_sink)
            logger.add(_forward_loguru, level="WARNING", format="{message}")
            for line in banner.getvalue().splitlines():
                _stdlib_logger.debug("%s", line)

            _loaded = tau2.registry
    return _loaded
