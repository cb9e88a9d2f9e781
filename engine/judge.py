"""The NL-assertion judge: tau2's `NLAssertionsEvaluator` on any OpenAI-compatible endpoint.

Tasks whose reward basis holds NL_ASSERTION (upstream tau2-bench v1.0's retail tasks) are
graded partly by an LLM reading the conversation. The judge here sends exactly the
request tau2's evaluator sends (its system and user prompts, temperature 0: pinned by
`tests/test_judge.py` against the installed package's evaluator), reads its verdicts as tau2
does, and records each call as a `judge` event (model, latency, tokens, one verdict per
assertion). Calls are retried like model calls (engine.retry); a reply that is not tau2's
verdict JSON, or that leaves an assertion unjudged, is a JudgeError (the episode ends
infra_error: never a silent 0 or 1).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.clients import ClientPool
from engine.config import Endpoint
from engine.errors import JudgeError
from engine.events import emit_in_episode
from engine.retry import call_with_retries, retry_events, retry_policy

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion
    from tau2.data_model.message import Message
    from tau2.data_model.simulation import NLAssertionCheck
    from tau2.data_model.tasks import Task

# tau2.evaluator.evaluator_nl_assertions.NLAssertionsEvaluator.evaluate_nl_assertions builds
# these inside the function body, so they cannot be imported; kept verbatim, whitespace
# included (tests/test_judge.py compares the requests of both).
SYSTEM_PROMPT = """
        TASK
        - You will be given a list of expected outcomes and a conversation that was collected during a test case run.
        - The conversation is between an agent and a customer.
        - Your job is to evaluate whether the agent satisfies each of the expected outcomes.
        - Grade each expected outcome individually.

        FORMAT
        - Your response should be a JSON object with the following fields:
        - `reasoning`: a short explanation for your classification
        - `metExpectation`: `true` if the agent satisfies the expected outcomes, `false` otherwise
        - `expectedOutcome`: repeat the expectation from the input that you are grading
        
        Example response structure:
        {
            "results": [
                {
                    "expectedOutcome": "<one of the expected outcomes from the input>",
                    "reasoning": "<reasoning trace>",
                    "metExpectation": <false or true>,
                }
            ]
        }
        """  # noqa: E501, W291, W293

USER_PROMPT = """
        conversation:
        {trajectory_str}
        
        expectedOutcomes:
        {nl_assertions}
        """  # noqa: W291, W293


def judge_messages(trajectory: Sequence[Message], nl_assertions: Sequence[str]) -> list[dict[str, str]]:
    """The chat messages tau2's evaluator sends for `trajectory` and `nl_assertions`."""
    trajectory_str = "\n".join(f"{message.role}: {message.content}" for message in trajectory)
    user = USER_PROMPT.format(trajectory_str=trajectory_str, nl_assertions=list(nl_assertions))
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def request_arguments() -> dict[str, Any]:
    """tau2's judge arguments (DEFAULT_LLM_NL_ASSERTIONS_ARGS: temperature 0)."""
    from tau2.config import DEFAULT_LLM_NL_ASSERTIONS_ARGS

    return dict(DEFAULT_LLM_NL_ASSERTIONS_ARGS)


def parse_verdicts(content: str | None, nl_assertions: Sequence[str]) -> list[NLAssertionCheck]:
    """tau2's reading of the judge's reply; a reply it could not read, or one that leaves an
    assertion without a verdict, is a JudgeError."""
    from tau2.data_model.simulation import NLAssertionCheck

    try:
        data = json.loads(content or "")
        checks = [
            NLAssertionCheck(
                nl_assertion=result["expectedOutcome"],
                met=result["metExpectation"],
                justification=result["reasoning"],
            )
            for result in data.get("results", [])
        ]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        shown = (content or "")[:300]
        raise JudgeError(
            f"judge reply is not tau2's verdict JSON ({type(exc).__name__}: {exc}): {shown!r}"
        ) from exc
    if len(checks) != len(nl_assertions):
        raise JudgeError(
            f"judge gave {len(checks)} verdicts for {len(nl_assertions)} NL assertions: "
            f"{[c.nl_assertion for c in checks]!r}"
        )
    return checks


class Judge:
    """Judges episodes' NL assertions; owns one connection pool (closed by `aclose`)."""

    def __init__(self, max_connections: int = 64) -> None:
        self._pool = ClientPool(max_connections)

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def verdicts(
        self, endpoint: Endpoint, task: Task, trajectory: Sequence[Message]
    ) -> list[NLAssertionCheck]:
        """One verdict per NL assertion of `task` on `trajectory`; emits a `judge` event."""
        criteria = task.evaluation_criteria
        assertions = list(criteria.nl_assertions or []) if criteria is not None else []
        request: dict[str, Any] = {
            "model": endpoint.model,
            "messages": judge_messages(trajectory, assertions),
            **request_arguments(),
        }
        client = self._pool.client(endpoint)

        async def attempt() -> tuple[ChatCompletion, float]:
            started = time.perf_counter()
            completion = await client.chat.completions.create(**request)
            return completion, time.perf_counter() - started

        completion, latency = await call_with_retries(
            attempt,
            retry_policy(endpoint),
            what="NL-assertion judge call",
            on_retry=retry_events("judge_call"),
        )
        if not completion.choices:
            raise JudgeError("judge endpoint answered with no choices")
        checks = parse_verdicts(completion.choices[0].message.content, assertions)
        usage = completion.usage
        emit_in_episode(
            "judge",
            model=endpoint.model,
            latency_s=latency,
            usage=(
                {
                    "input_tokens": usage.prompt_tokens,
                    "output_tokens": usage.completion_tokens,
                    "total_tokens": usage.total_tokens,
                }
                if usage is not None
                else None
            ),
            assertions=assertions,
            verdicts=[check.model_dump(mode="json") for check in checks],
            reward=1.0 if all(check.met for check in checks) else 0.0,
        )
        return checks
