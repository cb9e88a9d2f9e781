"""Errors raised by the analysis layer.

``AnalysisError -> InputError``: an ``InputError`` is a bad events file, glob, flag
value or output path; its message names the value.
"""

from __future__ import annotations


class AnalysisError(Exception):
    """Base class for every error the analysis layer raises on purpose."""


class InputError(AnalysisError, ValueError):
    """The caller gave a value we cannot use; the message names it."""
