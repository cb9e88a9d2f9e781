"""Retrying model calls: which endpoint failures are transient, and how long to back off.

Connection errors, timeouts, 408/409/429 and 5xx answers are transient: the call is
retried after a bounded exponential backoff with full jitter. Anything else (400, 401,
a malformed response) is not retried. Past the budget the caller gets `ModelError`.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import openai

from engine.config import Endpoint
from engine.errors import ModelError
from engine.events import emit_in_episode

T = TypeVar("T")

RETRYABLE_STATUS: frozenset[int] = frozenset({408, 409, 429})


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently a model call is retried."""

    max_retries: int = 5
    """Retries after the first attempt (0: fail on the first transient error)."""
    backoff_s: float = 0.5
    """Base of the exponential backoff: attempt n waits up to backoff_s * 2**n."""
    max_backoff_s: float = 30.0
    """Cap of one backoff wait."""

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter backoff before retrying after failed attempt `attempt` (0-based)."""
        ceiling = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        return (rng or random).uniform(ceiling / 2, ceiling)


def is_transient(exc: BaseException) -> bool:
    """True for endpoint failures worth retrying (connection, timeout, 408/409/429, 5xx)."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    return False


def describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"[:500]
    return (str(exc) or type(exc).__name__)[:500]


OnRetry = Callable[[int, BaseException, float], None]


def retry_events(scope: str) -> OnRetry:
    """An OnRetry that records each retry as a `retry` event of the current episode."""

    def on_retry(attempt: int, exc: BaseException, backoff_s: float) -> None:
        emit_in_episode(
            "retry",
            attempt=attempt,
            error_type=type(exc).__name__,
            error=describe(exc),
            backoff_s=backoff_s,
            scope=scope,
        )

    return on_retry


"""Called before each backoff: (failed attempt, its error, backoff seconds)."""


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    on_retry: OnRetry | None = None,
) -> T:
    """Await `call()`, retrying transient failures; raise ModelError past the budget."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt >= policy.max_retries:
                raise ModelError(
                    f"{what} failed after {attempt + 1} attempts: {type(exc).__name__}: {describe(exc)}"
                ) from exc
            delay = policy.backoff(attempt)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            await anyio.sleep(delay)
            attempt += 1


def retry_policy(endpoint: Endpoint | None) -> RetryPolicy:
    """The retry policy of calls to `endpoint` (defaults when there is none)."""
    if endpoint is None:
        return RetryPolicy()
    return RetryPolicy(max_retries=endpoint.max_retries, backoff_s=endpoint.backoff_s)
