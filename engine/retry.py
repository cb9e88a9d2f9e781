"""Model-call failures: what each one means, and retrying the transient ones.

- a context overflow (400 or 413, or a 5xx whose message says so) is the policy's own
  runaway: `ContextOverflow` (agent_error), never retried;
- 401, 403, 404 mean the run itself is misconfigured (key, model, path):
  `EndpointRejected`, never retried, and the run stops;
- connection errors, timeouts, 408/409/429 and other 5xx answers are transient: the call
  is retried after a bounded exponential backoff with full jitter; past the budget the
  caller gets `ModelError` (infra_error);
- anything else (another 400, a malformed response) is raised as it is.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio
import openai

from engine.config import Endpoint
from engine.errors import ContextOverflow, EndpointRejected, EngineError, ModelError
from engine.events import emit_in_episode

T = TypeVar("T")

RETRYABLE_STATUS: frozenset[int] = frozenset({408, 409, 429})
REJECTING_STATUS: frozenset[int] = frozenset({401, 403, 404})

OVERFLOW_MARKERS: tuple[str, ...] = (
    "context_length_exceeded",  # OpenAI's error code
    "maximum context length",  # OpenAI, vLLM, llama-cpp-python
    "context length",  # SGLang: "longer than the model's context length"
    "context window",  # llama-cpp-python: "exceed context window"
    "context size",  # llama.cpp server: "exceeds the available context size"
    "prompt is too long",
    "input is too long",
    "too many tokens",
    "exceeds max_total_tokens",  # AReaL's proxy: "len of prompt tokens N exceeds max_total_tokens M"
    "exceeds engine_max_tokens",  # ... and its engine_max_tokens twin
)
"""Phrases by which OpenAI-compatible servers report a prompt that does not fit."""


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


def _error_text(exc: openai.APIStatusError) -> str:
    return f"{exc.message} {exc.body!r}".lower()


def is_context_overflow(exc: BaseException) -> bool:
    """True when the endpoint says the prompt does not fit the model's context, whatever
    status it chose for that (400, 413, or a 500 from some servers)."""
    if not isinstance(exc, openai.APIStatusError) or exc.status_code in REJECTING_STATUS:
        return False
    text = _error_text(exc)
    return any(marker in text for marker in OVERFLOW_MARKERS)


def is_rejection(exc: BaseException) -> bool:
    """True for 401, 403 and 404: the key, the model name or the URL is wrong."""
    return isinstance(exc, openai.APIStatusError) and exc.status_code in REJECTING_STATUS


def is_transient(exc: BaseException) -> bool:
    """True for endpoint failures worth retrying (connection, timeout, 408/409/429, 5xx),
    except a context overflow reported as 5xx (retrying it cannot help)."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError) and not is_context_overflow(exc):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    return False


def describe(exc: BaseException) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"[:500]
    return (str(exc) or type(exc).__name__)[:500]


def final_error(
    exc: BaseException, what: str, *, overflow: type[EngineError] = ContextOverflow
) -> EngineError | None:
    """The engine error a failed call ends in without any retry (None: not final)."""
    if is_context_overflow(exc):
        return overflow(f"{what}: the conversation no longer fits the model's context ({describe(exc)})")
    if is_rejection(exc):
        assert isinstance(exc, openai.APIStatusError)
        return EndpointRejected(
            f"{what} rejected by {exc.request.url}: {describe(exc)} "
            "(check the API key, the model name and the base URL)"
        )
    return None


OnRetry = Callable[[int, BaseException, float], None]
"""Called before each backoff: (failed attempt, its error, backoff seconds)."""


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


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    on_retry: OnRetry | None = None,
    overflow: type[EngineError] = ContextOverflow,
) -> T:
    """Await `call()`, retrying transient failures; raise ModelError past the budget,
    `overflow` on a context overflow and EndpointRejected on 401/403/404 at once."""
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            final = final_error(exc, what, overflow=overflow)
            if final is not None:
                raise final from exc
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


