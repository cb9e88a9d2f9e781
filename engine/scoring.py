"""tau2's reward, computed fast: the same `RewardInfo` as stock `evaluate_simulation(...,
EvaluationType.ALL, ...)`, at a fraction of its cost.

Stock scoring builds two environments from the domain's files (the predicted one,
replaying the trajectory, and the gold one, replaying the task's gold actions) and hashes
both databases. Here:

- environments come from `engine.envs.tau2_cache` (parsed once, cheap copies);
- the gold replay depends only on the task, so its database states are computed once
  per (domain, task) and kept;
- the predicted environment is rebuilt by tau2's own `set_state` replay on a cheap copy
  (so a trajectory tau2 would reject is rejected the same way), and its databases are
  compared with the gold ones without hashing megabytes (`engine.envs.cow.same_state`).

The action and communication checks are tau2's own evaluators; the combination below
mirrors `tau2.evaluator.evaluator.evaluate_simulation` line by line.
`tests/test_scoring_equivalence.py` checks every task of every domain against stock.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine import tau2lib
from engine.envs import tau2_cache

if TYPE_CHECKING:
    from tau2.data_model.message import Message
    from tau2.data_model.simulation import NLAssertionCheck, RewardInfo, SimulationRun
    from tau2.data_model.tasks import Task
    from tau2.environment.environment import Environment


@dataclass(frozen=True)
class GoldState:
    """The gold environment's database states after the task's gold actions."""

    task: Task
    agent: tau2_cache.Fingerprint
    user: tau2_cache.Fingerprint


_gold: dict[tuple[str | None, str, str], GoldState] = {}
_gold_lock = threading.Lock()


def gold_state(domain: str, task: Task, data_dir: str | None = None) -> GoldState:
    """The gold replay of `task` (cached per data source, domain and task), exactly as
    tau2's EnvironmentEvaluator runs it: a non-solo environment, the task's initial state,
    then each gold action through `make_tool_call`, errors logged and skipped."""
    key = (data_dir, domain, task.id)
    found = _gold.get(key)
    if found is not None and (found.task is task or found.task == task):
        return found
    from loguru import logger

    assert task.evaluation_criteria is not None
    state = task.initial_state
    env = tau2_cache.new_environment(domain, solo_mode=False, data_dir=data_dir)
    env.set_state(
        initialization_data=state.initialization_data if state else None,
        initialization_actions=state.initialization_actions if state else None,
        message_history=(state.message_history or []) if state else [],
    )
    for action in task.evaluation_criteria.actions or []:
        try:
            env.make_tool_call(
                tool_name=action.name, requestor=action.requestor, **action.arguments
            )
        except Exception as e:  # as tau2: a failing gold action is logged and skipped
            logger.warning(f"Error in golden actions {action.name}({action.arguments}): {e}")
    found = GoldState(
        task=task,
        agent=tau2_cache.agent_fingerprint(domain, env, data_dir),
        user=tau2_cache.user_fingerprint(domain, env, data_dir),
    )
    with _gold_lock:
        _gold[key] = found
    return found


def environment_reward(
    domain: str,
    task: Task,
    trajectory: Sequence[Message],
    solo_mode: bool,
    predicted: Environment | None = None,
    data_dir: str | None = None,
) -> RewardInfo:
    """`EnvironmentEvaluator.calculate_reward` with cached gold states and cheap copies.

    `predicted`, when given, is the episode's own environment after the episode: it went
    through exactly the operations tau2's replay would apply (the task's initial state,
    then every tool call of `trajectory` in order through `get_response`), so its final
    state is the replay's, and replaying is skipped."""
    from tau2.data_model.simulation import DBCheck, EnvAssertionCheck, RewardInfo
    from tau2.data_model.tasks import RewardType
    from tau2.evaluator.evaluator_env import EnvironmentEvaluator

    criteria = task.evaluation_criteria
    if criteria is None:
        return RewardInfo(reward=1.0, info={"note": "No evaluation criteria"})
    if criteria.actions is None and criteria.env_assertions is None:
        return RewardInfo(
            reward=1.0,
            db_check=DBCheck(db_match=True, db_reward=1.0),
            info={"note": "No expected actions or env assertions"},
        )
    if predicted is None:
        state = task.initial_state
        predicted = tau2_cache.new_environment(domain, solo_mode=solo_mode, data_dir=data_dir)
        predicted.set_state(
            initialization_data=state.initialization_data if state else None,
            initialization_actions=state.initialization_actions if state else None,
            message_history=list(trajectory),
        )
    gold = gold_state(domain, task, data_dir)
    agent_match = tau2_cache.agent_matches(domain, predicted, gold.agent, data_dir)
    user_match = tau2_cache.user_matches(domain, predicted, gold.user, data_dir)
    if agent_match is None or user_match is None:  # not comparable cheaply: stock path
        return EnvironmentEvaluator.calculate_reward(
            environment_constructor=environment_constructor(domain, data_dir),
            task=task,
            full_trajectory=list(trajectory),
            solo_mode=solo_mode,
        )
    db_match = agent_match and user_match
    db_reward = 1.0 if db_match else 0.0
    db_check = DBCheck(db_match=db_match, db_reward=db_reward)

    env_assertion_checks = []
    env_assertion_reward = 1.0
    for env_assertion in criteria.env_assertions or []:
        success = predicted.run_env_assertion(env_assertion, raise_assertion_error=False)
        check = EnvAssertionCheck(
            env_assertion=env_assertion, met=success, reward=1.0 if success else 0.0
        )
        env_assertion_checks.append(check)
        env_assertion_reward *= check.reward

    reward = 1.0
    reward_breakdown = {}
    if RewardType.DB in criteria.reward_basis:
        reward_breakdown[RewardType.DB] = db_reward
        reward *= db_reward
    if RewardType.ENV_ASSERTION in criteria.reward_basis:
        reward_breakdown[RewardType.ENV_ASSERTION] = env_assertion_reward
        reward *= env_assertion_reward
    return RewardInfo(
        reward=reward,
        db_check=db_check,
        env_assertions=env_assertion_checks,
        reward_basis=criteria.reward_basis,
        reward_breakdown=reward_breakdown,
    )


def environment_constructor(domain: str, data_dir: str | None) -> Callable[..., Environment]:
    """tau2's constructor of the domain's environments, over `data_dir`'s data."""
    if data_dir is None:
        return tau2lib.load().registry.get_env_constructor(domain)
    return functools.partial(tau2_cache.new_environment, domain, data_dir=data_dir)


def needs_judge(task: Task) -> bool:
    """Whether the task's reward depends on a judge's verdicts on its natural-language
    assertions (NL_ASSERTION in its reward basis, and assertions to judge)."""
    from tau2.data_model.tasks import RewardType

    criteria = task.evaluation_criteria
    return (
        criteria is not None
        and RewardType.NL_ASSERTION in criteria.reward_basis
        and bool(criteria.nl_assertions)
    )


def nl_assertions_reward(task: Task, checks: Sequence[NLAssertionCheck]) -> RewardInfo:
    """tau2's `NLAssertionsEvaluator.calculate_reward` with the judge's verdicts given."""
    from tau2.evaluator.evaluator_nl_assertions import NLAssertionsEvaluator

    judged = list(checks)

    class Judged(NLAssertionsEvaluator):
        @classmethod
        def evaluate_nl_assertions(cls, trajectory: Any, nl_assertions: Any) -> list[NLAssertionCheck]:
            return judged

    return Judged.calculate_reward(task=task, full_trajectory=[])


def evaluate_simulation(
    simulation: SimulationRun,
    task: Task,
    solo_mode: bool,
    domain: str,
    predicted: Environment | None = None,
    *,
    data_dir: str | None = None,
    nl_checks: Sequence[NLAssertionCheck] | None = None,
) -> RewardInfo:
    """Stock `evaluate_simulation(simulation, task, EvaluationType.ALL, solo_mode, domain)`;
    `predicted` as in `environment_reward`; `data_dir` the task data's source.

    A task whose reward basis holds NL_ASSERTION is scored, as upstream tau2's ALL does
    (and stock's ALL_WITH_NL_ASSERTIONS), with the judge's verdicts `nl_checks`
    (engine.judge); without them it raises as stock ALL does."""
    from tau2.data_model.simulation import RewardInfo, TerminationReason
    from tau2.data_model.tasks import RewardType
    from tau2.evaluator.evaluator import EvaluationType
    from tau2.evaluator.evaluator import evaluate_simulation as stock
    from tau2.evaluator.evaluator_action import ActionEvaluator
    from tau2.evaluator.evaluator_communicate import CommunicateEvaluator

    stopped = {TerminationReason.AGENT_STOP, TerminationReason.USER_STOP}
    if simulation.termination_reason not in stopped or task.evaluation_criteria is None:
        # no environment involved: stock is already cheap
        return stock(simulation, task, EvaluationType.ALL, solo_mode, domain)

    messages = simulation.messages
    basis = set(task.evaluation_criteria.reward_basis)
    nl_info: RewardInfo | None = None
    if RewardType.NL_ASSERTION in basis:
        if nl_checks is None and needs_judge(task):
            raise ValueError(
                "NL assertions are part of the reward basis, but they are not being evaluated."
            )
        nl_info = nl_assertions_reward(task, nl_checks or [])
    env_info = environment_reward(domain, task, messages, solo_mode, predicted, data_dir)
    action_info = ActionEvaluator.calculate_reward(task=task, full_trajectory=messages)
    communicate_info = CommunicateEvaluator.calculate_reward(task=task, full_trajectory=messages)

    reward = 1.0
    breakdown = {}
    if basis & {RewardType.DB, RewardType.ENV_ASSERTION}:
        if env_info.reward_breakdown is not None:
            breakdown.update(env_info.reward_breakdown)
        reward *= env_info.reward
    if basis & {RewardType.ACTION}:
        if action_info.reward_breakdown is not None:
            breakdown.update(action_info.reward_breakdown)
        reward *= action_info.reward
    if nl_info is not None:
        if nl_info.reward_breakdown is not None:
            breakdown.update(nl_info.reward_breakdown)
        reward *= nl_info.reward
    if basis & {RewardType.COMMUNICATE}:
        if communicate_info.reward_breakdown is not None:
            breakdown.update(communicate_info.reward_breakdown)
        reward *= communicate_info.reward
    return RewardInfo(
        reward=reward,
        db_check=env_info.db_check,
        env_assertions=env_info.env_assertions,
        action_checks=action_info.action_checks,
        nl_assertions=nl_info.nl_assertions if nl_info is not None else None,
        communicate_checks=communicate_info.communicate_checks,
        reward_basis=task.evaluation_criteria.reward_basis,
        reward_breakdown=breakdown,
        info={
            "env": env_info.info,
            "nl": nl_info.info if nl_info is not None else None,
            "communicate": communicate_info.info,
            "action": action_info.info,
        },
    )
