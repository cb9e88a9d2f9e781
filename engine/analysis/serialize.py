"""The machine-readable form of a summary (``tau2-engine analyze --json``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import orjson

from engine.analysis.compare import Comparison
from engine.analysis.metrics import Summary


def to_json(summary: Summary | None, comparison: Comparison | None = None) -> bytes:
    """One JSON object: the summary's fields at top level, plus ``compare`` when given.

    Integer keys (``pass_hat_k``) become strings: ``{"1": 0.75, "2": 0.5}``.
    """
    document: dict[str, Any] = asdict(summary) if summary is not None else {}
    if comparison is not None:
        document["compare"] = asdict(comparison)
    return orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_INDENT_2)
