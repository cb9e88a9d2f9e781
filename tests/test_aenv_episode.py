"""serve-env's episode rules against their source: tau2's own `AgentGymEnv`, which
AEnvironment's official tau2 env steps once per agent action.

Each case drives tau2's gym env and a `ServedEpisode` with the same actions and compares,
action by action, what the official env answers: the observation (the last non-empty
one, role prefix trimmed, as the official `_get_last_obs`), the reward and the done flag.
Conversations use tau2's own litellm user simulator on both sides, answered by a local
OpenAI-compatible server (the official env passes TAU2_USER_LLM_API_BASE/KEY to litellm).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import pytest

from engine import catalog
from engine.config import EpisodeSpec, UserConfig
from engine.envs.aenv_episode import GREETING, ServedEpisode
from engine.envs.aenv_protocol import trim_observation
from engine.envs.local import LocalSession, build_environment
from engine.trajectory import Trajectory
from tests.fake_openai_server import FakeOpenAI, scripted_user

# litellm's first OpenAI call imports a module whose TypedDict pydantic warns about.
pytestmark = pytest.mark.filterwarnings("ignore:.*on TypedDict class.*ReadOnly:UserWarning")

Action = tuple[Any, ...]
"""("tool", name, arguments) | ("text", text) | ("done",)"""
Answer = tuple[str, float, bool]


@pytest.fixture(autouse=True)
def tasks_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """AgentGymEnv reloads the domain's task file on every step; load it once."""
    from tau2.registry import registry

    loader = registry.get_tasks_loader
    monkeypatch.setattr(registry, "get_tasks_loader",
                        functools.cache(lambda domain: functools.cache(loader(domain))))


def gym_answers(domain: str, task_id: str, *, solo_mode: bool, max_steps: int,
                actions: Sequence[Action], user: FakeOpenAI | None = None) -> list[Answer]:
    """What the official env answers: tau2's AgentGymEnv stepped per action."""
    from tau2.gym.gym_agent import AgentGymEnv

    user_args = {"api_base": user.base_url, "api_key": "user-key"} if user else None
    env = AgentGymEnv(domain=domain, task_id=task_id, max_steps=max_steps, solo_mode=solo_mode,
                      user_llm="openai/user-sim" if user else None, user_llm_args=user_args)
    observation, _ = env.reset()
    last = observation
    answers: list[Answer] = [(trim_observation(last), 0.0, False)]
    for action in actions:
        if action[0] == "tool":
            step = json.dumps({"name": action[1], "arguments": action[2]})
        elif action[0] == "done":
            step = json.dumps({"name": "done", "arguments": {}})
        else:
            step = action[1]
        observation, reward, done, _, _ = env.step(step)
        last = observation if observation not in ("", None) else last
        answers.append((trim_observation(last), float(reward), bool(done)))
    return answers


async def served_answers(domain: str, task_id: str, *, solo_mode: bool, max_steps: int,
                         actions: Sequence[Action], user: FakeOpenAI | None = None,
                         ) -> tuple[list[Answer], ServedEpisode]:
    task = catalog.get_task(domain, task_id)
    spec = EpisodeSpec(domain=domain, task_id=task_id, solo_mode=solo_mode, max_steps=max_steps,
                       user=UserConfig(kind="llm", litellm_model="openai/user-sim") if user
                       else UserConfig())
    session = LocalSession(spec, task, build_environment(spec, task), anyio.CapacityLimiter(1))
    episode = ServedEpisode(session=session, max_steps=max_steps, max_errors=spec.max_errors,
                            trajectory=Trajectory(session.history))
    await episode.open()
    answers: list[Answer] = [(episode.last_observation, 0.0, False)]
    for action in actions:
        if action[0] == "tool":
            result = await episode.call_tool(action[1], dict(action[2]))
        elif action[0] == "done":
            result = await episode.stop()
        else:
            result = await episode.send_message(action[1])
        answers.append((result.observation, result.reward, result.done))
    return answers, episode


def gold(task: Any) -> list[Action]:
    return [("tool", a.name, dict(a.arguments)) for a in task.evaluation_criteria.actions]


TELECOM = catalog.task_set("telecom").tasks[0]
AIRLINE = next(t for t in catalog.task_set("airline").tasks
               if t.evaluation_criteria and t.evaluation_criteria.actions)


@pytest.fixture
def user_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """tau2's litellm user on a local endpoint (litellm reads OPENAI_BASE_URL/KEY when the
    server gets only a model string, as serve-env's TAU2_USER_LLM without an API base)."""
    with FakeOpenAI(scripted_user(AIRLINE)).running() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "user-key")
        yield server


@pytest.mark.anyio
async def test_solo_gold_actions_a_failed_call_and_done_answer_as_tau2s_gym() -> None:
    actions = [*gold(TELECOM)[:1], ("tool", "get_customer_by_phone", {"phone_number": "000"}),
               *gold(TELECOM)[1:], ("done",), ("text", "Anything else?")]
    expected = gym_answers("telecom", TELECOM.id, solo_mode=True, max_steps=50, actions=actions)
    answers, episode = await served_answers("telecom", TELECOM.id, solo_mode=True, max_steps=50,
                                            actions=actions)
    assert answers == expected
    assert answers[2][0].startswith("Error: ")  # the failed call, in tau2's words
    assert [a[1] for a in answers[1:]] == [0.0] * (len(actions) - 2) + [1.0, 0.0]
    assert episode.termination == "agent_stop" and episode.total_reward == 1.0


@pytest.mark.anyio
async def test_solo_text_ends_the_episode_with_reward_zero_as_tau2s_gym() -> None:
    actions = [*gold(TELECOM)[:1], ("text", "I have fixed your phone."), ("done",)]
    expected = gym_answers("telecom", TELECOM.id, solo_mode=True, max_steps=50, actions=actions)
    answers, episode = await served_answers("telecom", TELECOM.id, solo_mode=True, max_steps=50,
                                            actions=actions)
    assert answers == expected
    assert answers[2][1:] == (0.0, True) and episode.termination == "agent_error"


@pytest.mark.anyio
async def test_the_step_budget_flags_done_where_tau2s_gym_does() -> None:
    actions = [("tool", "check_status_bar", {}), ("tool", "check_network_status", {}),
               ("tool", "check_sim_status", {}), ("tool", "check_apn_settings", {})]
    expected = gym_answers("telecom", TELECOM.id, solo_mode=True, max_steps=5, actions=actions)
    answers, episode = await served_answers("telecom", TELECOM.id, solo_mode=True, max_steps=5,
                                            actions=actions)
    assert answers == expected
    assert [a[2] for a in answers] == [False, False, False, True, True]
    assert episode.termination == "max_steps"


@pytest.mark.anyio
async def test_a_conversation_opens_with_the_greeting_and_ends_on_the_users_stop(
    user_llm: FakeOpenAI,
) -> None:
    from engine.policies.oracle import final_step

    closing = final_step(AIRLINE, solo_mode=False).text  # type: ignore[union-attr]
    actions = [*gold(AIRLINE), ("text", closing)]
    expected = gym_answers("airline", AIRLINE.id, solo_mode=False, max_steps=50, actions=actions,
                           user=user_llm)
    answers, episode = await served_answers("airline", AIRLINE.id, solo_mode=False, max_steps=50,
                                            actions=actions, user=user_llm)
    assert answers == expected
    assert episode.trajectory.messages[0].content == GREETING
    assert answers[0][0] and answers[-1] == ("###STOP###", 1.0, True)
    assert episode.termination == "user_stop"


@pytest.mark.anyio
async def test_done_ends_a_conversation_too(user_llm: FakeOpenAI) -> None:
    actions = [*gold(AIRLINE)[:1], ("done",)]
    expected = gym_answers("airline", AIRLINE.id, solo_mode=False, max_steps=50, actions=actions,
                           user=user_llm)
    answers, episode = await served_answers("airline", AIRLINE.id, solo_mode=False, max_steps=50,
                                            actions=actions, user=user_llm)
    assert answers == expected
    assert answers[-1][2] is True and episode.termination == "agent_stop"
