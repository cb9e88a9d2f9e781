"""Analysis of events JSON Lines files (``tau2-engine analyze``).

Reads the events with DuckDB (:mod:`.load`), computes metrics (:mod:`.metrics`),
renders terminal tables (:mod:`.report`), plots (:mod:`.plots`), a self-contained
HTML report (:mod:`.html_report`), tau2 ``Results`` (:mod:`.export`) and run
comparisons (:mod:`.compare`). It only reads files and imports nothing else from
``engine``.
"""

from __future__ import annotations

from engine.analysis.cli import main_analyze
from engine.analysis.compare import Comparison, TaskDelta, compare_runs
from engine.analysis.errors import AnalysisError, InputError
from engine.analysis.load import EventStore, load_events, open_events, resolve_paths
from engine.analysis.metrics import Summary, summarize
from engine.analysis.serialize import to_json
from engine.analysis.stats import is_successful, pass_hat_k, pass_hat_ks

__all__ = [
    "AnalysisError",
    "Comparison",
    "EventStore",
    "InputError",
    "Summary",
    "TaskDelta",
    "compare_runs",
    "is_successful",
    "load_events",
    "main_analyze",
    "open_events",
    "pass_hat_k",
    "pass_hat_ks",
    "resolve_paths",
    "summarize",
    "to_json",
]
