"""One episode: open an environment, run the agent against it until it stops, score it.

Whatever happens (stop, budget, timeout, crash, cancellation) the episode emits exactly
one `episode_end` and returns an EpisodeResult.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from engine import scoring, stamp
from engine.agent import EpisodeState, EpisodeStop, ObservedModel, build_agent, input_items
from engine.compute import ComputeTurn
from engine.config import EpisodeSpec
from engine.deadline import Deadline
from engine.envs.base import EnvBackend, EnvSession, Score
from engine.errors import (
    AgentMisbehaved,
    EngineError,
    JudgeError,
    ScoringFailed,
    StepBudgetExhausted,
    TextInSolo,
    TooManyToolErrors,
)
from engine.events import EventLog, episode_context
from engine.fingerprint import fingerprint
from engine.judge import Judge
from engine.results import EpisodeResult, Status
from engine.sdk import AgentsException, MaxTurnsExceeded, Model, ModelBehaviorError
from engine.trajectory import Trajectory, assistant_message, calls_of
from engine.users.base import call_metrics, is_stop

if TYPE_CHECKING:
    from tau2.data_model.message import Message
    from tau2.data_model.simulation import NLAssertionCheck

GREETING = "Hi! How can I help you today?"  # tau2's DEFAULT_FIRST_AGENT_MESSAGE

TERMINATION_STATUS: dict[str, Status] = {
    "agent_stop": Status.COMPLETED,
    "user_stop": Status.COMPLETED,
    "max_steps": Status.MAX_STEPS,
    "too_many_errors": Status.AGENT_ERROR,
    "agent_error": Status.AGENT_ERROR,
    "user_error": Status.INFRA_ERROR,
}


@dataclass(frozen=True)
class EpisodeRuntime:
    """What episodes of one run share."""

    events: EventLog
    backend: EnvBackend
    env_limiter: anyio.CapacityLimiter
    model_limiter: anyio.CapacityLimiter
    make_model: Callable[[EpisodeSpec, Any], Model]
    backend_name: str = "local"
    compute_gate: anyio.CapacityLimiter | None = None
    """Episodes working on the event loop at once (engine.compute); None: no gate."""
    judge: Judge = field(default_factory=Judge)
    """Judges NL assertions of the tasks scored on them (closed with the engine)."""
    observers: list[Callable[[EpisodeResult], None]] = field(default_factory=list)
    """Called with every episode's result, whatever ended it (cancellation included)."""


class EpisodeDeadline(Exception):
    """The episode's own deadline passed (not a timeout raised by something inside it)."""


def _status_of_error(exc: BaseException) -> Status:
    """The policy's fault (agent_error) or everything else: the environment, the endpoint
    or the engine itself (infra_error, so AReaL does not train on it)."""
    if isinstance(exc, AgentMisbehaved | ModelBehaviorError | MaxTurnsExceeded):
        return Status.AGENT_ERROR
    return Status.INFRA_ERROR


def _unwrap(exc: BaseException) -> BaseException:
    """The Agents SDK may wrap errors raised inside tools or models."""
    seen = exc
    while isinstance(seen, AgentsException) and seen.__cause__ is not None:
        seen = seen.__cause__
    return seen


async def run_episode(spec: EpisodeSpec, runtime: EpisodeRuntime, *, attempt: int = 0) -> EpisodeResult:
    # a task started just before its run was cancelled runs this far before it can see the
    # cancellation: it must not start an episode
    await anyio.lowlevel.checkpoint_if_cancelled()
    episode_id = uuid.uuid4().hex[:16]
    events = runtime.events
    with episode_context(
        events,
        episode_id=episode_id,
        domain=spec.domain,
        task_id=spec.task_id,
        sample=spec.sample,
        attempt=attempt,
    ):
        # The first episode of a data source hashes its files: off the loop.
        episode_stamp = stamp.cached(spec)
        if episode_stamp is None:
            episode_stamp = await anyio.to_thread.run_sync(stamp.episode_stamp, spec)
        episode_fingerprint = fingerprint(spec, episode_stamp)
        events.emit(
            "episode_start",
            seed=spec.seed,
            policy=spec.policy.name,
            backend=runtime.backend_name,
            solo_mode=spec.solo_mode,
            user=None if spec.solo_mode else spec.user.kind,
            think_tool=spec.think_tool,
            max_steps=spec.max_steps,
            timeout_s=spec.timeout_s,
            stamp=episode_stamp,
            fingerprint=episode_fingerprint,
        )
        started = time.perf_counter()
        state: EpisodeState | None = None
        status = Status.INFRA_ERROR
        score: Score | None = None
        termination: str | None = None
        error: BaseException | None = None
        deadline = Deadline(spec.timeout_s)
        try:
            with deadline.scope:
                async with deadline.slot(runtime.env_limiter), runtime.backend.session(spec) as session:
                    state = EpisodeState(
                        spec=spec,
                        trajectory=Trajectory(),
                        events=events,
                        deadline=deadline,
                        compute=ComputeTurn(runtime.compute_gate, deadline),
                    )
                    judged = scoring.needs_judge(session.task)
                    if judged and spec.judge is None:
                        raise JudgeError(_no_judge(spec))
                    termination = await _converse(session, state, runtime)
                    nl_checks: list[NLAssertionCheck] | None = None
                    if judged and termination in ("agent_stop", "user_stop"):
                        assert spec.judge is not None
                        async with deadline.slot(runtime.model_limiter):
                            nl_checks = await runtime.judge.verdicts(
                                spec.judge, session.task, state.trajectory.messages
                            )
                    score = await _score(session, state, termination, nl_checks)
            if deadline.passed:
                raise EpisodeDeadline
            # the deadline's scope swallowed nothing, so the block ran to its end
            assert termination is not None and state is not None and score is not None
            status = TERMINATION_STATUS.get(termination, Status.AGENT_ERROR)
            if status is not Status.COMPLETED:
                error = _termination_error(termination, state)
            events.emit(
                "reward", reward=score.reward, reward_info=score.reward_info, termination_reason=termination
            )
        except EpisodeDeadline as exc:
            status, error = Status.TIMEOUT, exc
        except anyio.get_cancelled_exc_class() as exc:
            status, error = Status.CANCELLED, exc
            raise
        except Exception as exc:  # every other failure ends the episode with its class recorded
            error = _unwrap(exc)
            status = _status_of_error(error)
        finally:
            reward = score.reward if score is not None and status is Status.COMPLETED else 0.0
            result = EpisodeResult(
                episode_id=episode_id,
                domain=spec.domain,
                task_id=spec.task_id,
                sample=spec.sample,
                reward=reward,
                status=status,
                reward_info=score.reward_info if score is not None else None,
                turns=state.turns if state else 0,
                tool_calls=state.tool_calls if state else 0,
                model_calls=state.model_calls if state else 0,
                duration_s=time.perf_counter() - started,
                error=_describe(error, status),
                error_type=type(error).__name__ if error is not None else None,
                seed=spec.seed,
                policy=spec.policy.name,
                attempt=attempt,
                termination_reason=termination,
                queue_wait_s=deadline.queue_wait_s,
            )
            events.emit(
                "episode_end",
                status=result.status.value,
                reward=result.reward,
                turns=result.turns,
                tool_calls=result.tool_calls,
                model_calls=result.model_calls,
                duration_s=result.duration_s,
                error=result.error,
                error_type=result.error_type,
                seed=spec.seed,
                policy=spec.policy.name,
                termination_reason=termination,
                queue_wait_s=result.queue_wait_s,
                stamp=episode_stamp,
                fingerprint=episode_fingerprint,
            )
            for observe in runtime.observers:
                observe(result)
        return result


async def _score(
    session: EnvSession,
    state: EpisodeState,
    termination: str,
    nl_checks: list[NLAssertionCheck] | None = None,
) -> Score:
    """tau2's reward of the finished conversation. An exception from tau2's evaluator
    (not from the environment's transport) is about the trajectory the agent left: stock
    tau2 records such a run as an agent_error with reward 0."""
    try:
        return await session.score(state.trajectory.messages, termination, nl_checks)
    except (EngineError, anyio.get_cancelled_exc_class()):
        raise
    except Exception as exc:
        raise ScoringFailed(
            f"tau2's evaluator raised after the conversation ended ({termination}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def _termination_error(termination: str, state: EpisodeState) -> EngineError:
    """Why a conversation that ended on its own did not complete."""
    spec = state.spec
    if termination == "max_steps":
        return StepBudgetExhausted(f"the episode used its max_steps={spec.max_steps} steps")
    if termination == "too_many_errors":
        return TooManyToolErrors(f"{state.tool_errors} tool calls failed (max_errors={spec.max_errors})")
    if state.failure is not None:
        return state.failure
    return AgentMisbehaved(f"the conversation ended {termination}")


def _no_judge(spec: EpisodeSpec) -> str:
    return (
        f"task {spec.domain}/{spec.task_id} is scored on NL assertions (reward basis NL_ASSERTION) "
        "and no judge is configured: pass --judge-model and --judge-base-url, or set "
        "TAU2_JUDGE_MODEL and TAU2_JUDGE_BASE_URL"
    )


def _describe(error: BaseException | None, status: Status) -> str | None:
    if error is None:
        return None
    if status is Status.TIMEOUT:
        return "episode deadline passed"
    if status is Status.CANCELLED:
        return "run cancelled"
    text = str(error) or type(error).__name__
    return text[:2000]


async def _converse(session: EnvSession, state: EpisodeState, runtime: EpisodeRuntime) -> str:
    """Run the conversation; return tau2's termination reason. The episode works on the
    loop in its turn (engine.compute), given up while it waits on the model or the user."""
    await state.compute.enter()
    try:
        return await _conversation(session, state, runtime)
    finally:
        state.compute.leave()


async def _conversation(session: EnvSession, state: EpisodeState, runtime: EpisodeRuntime) -> str:
    spec = state.spec
    for message in session.history:
        _record_history(state, message)
    model = ObservedModel(
        runtime.make_model(spec, session.task),
        state,
        runtime.model_limiter,
        spec.policy.endpoint.model if spec.policy.endpoint else spec.policy.name,
    )
    agent, context = build_agent(session, state, model)
    max_turns = spec.max_steps + 1  # the step budget (EpisodeStop) always ends first
    conversation = input_items(list(state.trajectory.messages))
    try:
        if session.solo_mode:
            await agent.run(conversation, context=context, max_turns=max_turns)
            if state.stopped:
                return "agent_stop"
            state.failure = TextInSolo(
                "the solo agent answered in text instead of calling a tool (tau2 ends the run "
                f"agent_error): {_last_text(state)!r}"
            )
            return "agent_error"
        agent_text = _opening(state)
        conversation = input_items(list(state.trajectory.messages))
        while True:
            state.check_budget()
            async with state.compute.waiting(session.user_replies_wait):
                replies = await session.send_to_user(agent_text)
            user_text = _record_user(state, replies)
            if is_stop(user_text):
                return "user_stop"
            conversation.append({"role": "user", "content": user_text or ""})
            result = await agent.run(conversation, context=context, max_turns=max_turns)
            conversation = result.to_input_list()
            if state.stopped:
                return "agent_stop"
            agent_text = str(result.final_output)
    except EpisodeStop as stop:
        return stop.reason
    except AgentsException as exc:
        inner = _unwrap(exc)
        if isinstance(inner, EpisodeStop):
            return inner.reason
        raise
    finally:  # before scoring, episode_end and the environment's release
        await context.close()


def _last_text(state: EpisodeState) -> str:
    for message in reversed(state.trajectory.messages):
        if message.role == "assistant":
            return (message.content or "")[:300]
    return ""


def _opening(state: EpisodeState) -> str:
    """The agent's first words to the user: tau2's greeting, or the history's last line."""
    history = state.trajectory.messages
    if not history:
        state.record_turn(
            assistant_message(GREETING, [], solo_mode=False), latency_s=0.0, usage=None, model=None
        )
        return GREETING
    last = history[-1]
    if last.role == "assistant" and last.content and not getattr(last, "tool_calls", None):
        return last.content
    raise AgentMisbehaved(
        f"task history ends with a {last.role} message; the engine resumes only from an agent message"
    )


def _record_history(state: EpisodeState, message: Message) -> None:
    if message.role == "tool":
        state.record_tool(
            _name_of_call(state, message.id),
            _args_of_call(state, message.id),
            message.model_copy(deep=True),
            latency_s=0.0,
            history=True,
        )
    else:
        state.record_turn(message.model_copy(deep=True), latency_s=0.0, usage=None, model=None, history=True)


def _find_call(state: EpisodeState, call_id: str) -> dict[str, Any]:
    for message in reversed(state.trajectory.messages):
        for call in calls_of(message):
            if call["id"] == call_id:
                return call
    return {"name": "", "arguments": {}}


def _name_of_call(state: EpisodeState, call_id: str) -> str:
    return str(_find_call(state, call_id)["name"])


def _args_of_call(state: EpisodeState, call_id: str) -> dict[str, Any]:
    return dict(_find_call(state, call_id)["arguments"])


def _record_user(state: EpisodeState, replies: list[Message]) -> str | None:
    """Record the user's messages; return the text of the last one."""
    text: str | None = None
    for message in replies:
        if message.role == "tool":
            state.record_tool(
                _name_of_call(state, message.id),
                _args_of_call(state, message.id),
                message,
                latency_s=0.0,
            )
        else:
            latency_s, usage, model = call_metrics(message)
            state.record_turn(message, latency_s=latency_s, usage=usage, model=model)
            if message.tool_calls:
                state.steps += 1
            text = message.content
    return text
