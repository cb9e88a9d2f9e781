"""The NL-assertion judge against a scripted judge on a real local HTTP server: the request
is stock tau2's, the reward is stock's, verdicts are events, failures are never a reward."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import catalog, scoring, taskdata
from engine.config import Endpoint, plan_episodes
from engine.errors import EpisodeDiscarded
from engine.hooks import run_agent_return_reward
from engine.judge import Judge
from tests.fake_openai_server import FakeOpenAI, Fault, judged_assertions, scripted_judge
from tests.helpers import assert_event_invariants, by_episode, run_specs
from tests.scoring_cases import replay

V101 = taskdata.check_data_dir(str(Path(__file__).parent / "data" / "tau2-v1.0.1"))
JUDGED = [t for t in catalog.task_set("retail", None, V101).tasks if scoring.needs_judge(t)]
UNJUDGED_NL = [  # NL_ASSERTION in the basis, but no assertion to judge: 1.0 without a judge
    t
    for t in catalog.task_set("retail", None, V101).tasks
    if "NL_ASSERTION" in {b.value for b in t.evaluation_criteria.reward_basis} and not scoring.needs_judge(t)
]


# litellm (stock tau2's model client) warns on import about pydantic ReadOnly TypedDicts.
STOCK_LITELLM = pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning")


def picky(assertion: str) -> bool:
    """A judge that finds some assertions unmet (deterministically)."""
    return len(assertion) % 3 != 0


@pytest.fixture(scope="module")
def judge_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(scripted_judge()).running() as server:
        yield server


@pytest.fixture(scope="module")
def picky_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(scripted_judge(picky)).running() as server:
        yield server


def endpoint(server: FakeOpenAI, model: str = "scripted-judge") -> Endpoint:
    return Endpoint(base_url=server.base_url, api_key="judge-key", model=model, max_retries=2, backoff_s=0.01)


def _stock_litellm_to(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    """Route stock tau2's judge (litellm, model gpt-4o-mini) to the local server."""
    monkeypatch.setenv("OPENAI_API_BASE", server.base_url)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "judge-key")


def test_some_retail_v101_tasks_need_the_judge_and_some_do_not() -> None:
    assert len(JUDGED) >= 30 and len(UNJUDGED_NL) >= 30


@STOCK_LITELLM
@pytest.mark.anyio
async def test_judge_request_is_stock_tau2s(
    judge_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tau2.evaluator.evaluator_nl_assertions import NLAssertionsEvaluator

    _stock_litellm_to(judge_server, monkeypatch)
    task = JUDGED[0]
    messages = replay("retail", task, task.evaluation_criteria.actions, solo_mode=False)
    before = len(judge_server.requests)
    stock = NLAssertionsEvaluator.evaluate_nl_assertions(messages, task.evaluation_criteria.nl_assertions)
    judge = Judge()
    try:
        ours = await judge.verdicts(endpoint(judge_server, model="gpt-4o-mini"), task, messages)
    finally:
        await judge.aclose()
    stock_body, our_body = (r.body for r in judge_server.requests[before:])
    assert our_body == stock_body
    assert ours == stock
    assert judged_assertions(our_body) == list(task.evaluation_criteria.nl_assertions)


@STOCK_LITELLM
@pytest.mark.anyio
@pytest.mark.parametrize("variant", ["gold", "drop-last"])
async def test_nl_scoring_equals_stock_all_with_nl_assertions(
    variant: str, picky_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tau2.data_model.simulation import SimulationRun
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

    _stock_litellm_to(picky_server, monkeypatch)
    judge = Judge()
    met_and_unmet = set()
    try:
        for task in JUDGED[:: max(1, len(JUDGED) // 8)]:
            actions = list(task.evaluation_criteria.actions or [])
            messages = replay("retail", task, actions if variant == "gold" else actions[:-1], solo_mode=False)
            simulation = SimulationRun(
                id="s", task_id=task.id, start_time="", end_time="", duration=0.0,
                termination_reason="user_stop", messages=messages,
            )  # fmt: skip
            stock = evaluate_simulation(
                simulation, task, EvaluationType.ALL_WITH_NL_ASSERTIONS, False, "retail"
            )
            checks = await judge.verdicts(endpoint(picky_server, model="gpt-4o-mini"), task, messages)
            ours = scoring.evaluate_simulation(
                simulation, task, False, "retail", data_dir=V101, nl_checks=checks
            )
            assert ours.model_dump(mode="json") == stock.model_dump(mode="json"), task.id
            met_and_unmet.add(ours.reward_breakdown["NL_ASSERTION"] if ours.reward_breakdown else None)
    finally:
        await judge.aclose()
    assert met_and_unmet == {0.0, 1.0}  # the picky judge failed some tasks and passed others


def test_scoring_without_verdicts_raises_as_stock_all_does() -> None:
    from tau2.data_model.simulation import SimulationRun

    task = JUDGED[0]
    messages = replay("retail", task, task.evaluation_criteria.actions, solo_mode=False)
    simulation = SimulationRun(
        id="s", task_id=task.id, start_time="", end_time="", duration=0.0,
        termination_reason="user_stop", messages=messages,
    )  # fmt: skip
    with pytest.raises(ValueError, match="NL assertions are part of the reward basis"):
        scoring.evaluate_simulation(simulation, task, False, "retail", data_dir=V101)


@pytest.mark.anyio
async def test_retail_v101_episodes_carry_the_judges_verdicts(picky_server: FakeOpenAI) -> None:
    tasks = [t.id for t in JUDGED[:6]] + [t.id for t in UNJUDGED_NL[:2]]
    specs = plan_episodes(domain="retail", task_ids=tasks, data_dir=V101, judge=endpoint(picky_server))
    summary, sink = await run_specs(specs)
    assert_event_invariants(sink.events)
    assert summary.statuses == {"completed": len(tasks)}
    for events in by_episode(sink.events).values():
        task = catalog.get_task("retail", events[0]["task_id"], None, V101)
        reward = next(e for e in events if e["event"] == "reward")
        judged = [e for e in events if e["event"] == "judge"]
        if not scoring.needs_judge(task):
            assert judged == [] and reward["reward"] == 1.0
            continue
        (event,) = judged
        assertions = list(task.evaluation_criteria.nl_assertions)
        assert event["assertions"] == assertions
        assert [v["nl_assertion"] for v in event["verdicts"]] == assertions
        assert [v["met"] for v in event["verdicts"]] == [picky(a) for a in assertions]
        assert event["model"] == "scripted-judge" and event["latency_s"] > 0
        assert event["usage"]["total_tokens"] > 0
        assert reward["reward_info"]["nl_assertions"] == event["verdicts"]
        assert reward["reward"] == event["reward"] == (1.0 if all(map(picky, assertions)) else 0.0)


@pytest.mark.anyio
async def test_without_a_judge_judged_tasks_end_infra_error_with_the_reason() -> None:
    tasks = [JUDGED[0].id, UNJUDGED_NL[0].id]
    summary, sink = await run_specs(plan_episodes(domain="retail", task_ids=tasks, data_dir=V101))
    by_task = {r.task_id: r for r in summary.results}
    failed = by_task[JUDGED[0].id]
    assert failed.status == "infra_error" and failed.reward == 0.0 and failed.error_type == "JudgeError"
    assert (
        failed.error is not None
        and "no judge is configured" in failed.error
        and "--judge-model" in failed.error
    )
    assert failed.model_calls == 0 and failed.turns == 0  # nothing spent on an episode that cannot be scored
    assert by_task[UNJUDGED_NL[0].id].status == "completed" and by_task[UNJUDGED_NL[0].id].reward == 1.0
    assert sink.named("reward") and len(sink.named("reward")) == 1


@pytest.mark.anyio
async def test_judge_endpoint_errors_are_retried_as_model_calls() -> None:
    with FakeOpenAI(scripted_judge()).running() as server:
        server.inject(Fault(status=503), Fault(status=429))
        specs = plan_episodes(domain="retail", task_ids=[JUDGED[0].id], data_dir=V101, judge=endpoint(server))
        summary, sink = await run_specs(specs)
    assert [r.reward for r in summary.results] == [1.0]
    assert [e["scope"] for e in sink.named("retry")] == ["judge_call", "judge_call"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reply", "message"),
    [("I think it is fine.", "not tau2's verdict JSON"), ('{"results": []}', "0 verdicts for")],
    ids=["not-json", "no-verdicts"],
)
async def test_unusable_judge_reply_ends_infra_error_not_a_reward(reply: str, message: str) -> None:
    def respond(body: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
        return reply, []

    with FakeOpenAI(respond).running() as server:
        specs = plan_episodes(domain="retail", task_ids=[JUDGED[0].id], data_dir=V101, judge=endpoint(server))
        summary, sink = await run_specs(specs)
    (result,) = summary.results
    assert result.status == "infra_error" and result.error_type == "JudgeError"
    assert result.error is not None and message in result.error
    assert sink.named("reward") == []


@pytest.mark.anyio
async def test_hook_takes_data_dir_from_econfig_and_judge_from_environment(
    judge_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = {"domain": "retail", "task_id": JUDGED[0].id, "policy": "oracle", "econfig": {"data_dir": V101}}
    with pytest.raises(EpisodeDiscarded, match="no judge is configured"):
        await run_agent_return_reward(data)
    monkeypatch.setenv("TAU2_JUDGE_MODEL", "scripted-judge")
    monkeypatch.setenv("TAU2_JUDGE_BASE_URL", judge_server.base_url)
    assert await run_agent_return_reward(data) == 1.0
    # the package's data has no such judged task definition: the same id scores on COMMUNICATE
    assert await run_agent_return_reward({**data, "econfig": {}}) == 1.0
