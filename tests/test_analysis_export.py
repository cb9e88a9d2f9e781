"""--export-tau2: tau2's own Results model loads the file and its metrics agree."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.analysis.cli import main_analyze
from tests.test_analysis_support import GREETING, STOP, Call, Episode, Msg, write_events

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

USER_MODEL = "user-sim-model"
AGENT_MODEL = "agent-model"
USAGE = {"input_tokens": 300, "output_tokens": 40, "total_tokens": 340}


def _conversation(task_id: str, arguments: dict[str, Any], tool: str) -> list[Msg]:
    """A real mock-domain conversation whose tool results come from tau2's mock environment."""
    from tau2.data_model.message import ToolCall
    from tau2.registry import registry

    env = registry.get_env_constructor("mock")()
    result = env.get_response(ToolCall(id="x", name=tool, arguments=arguments))
    call = Call(name=tool, arguments=arguments, result=result.content or "", error=result.error)
    return [
        Msg(role="assistant", content=GREETING, latency_s=0.0),
        Msg(role="user", content=f"Please handle {task_id}.", usage=USAGE, model=USER_MODEL),
        Msg(role="assistant", calls=(call,), usage=USAGE, model=AGENT_MODEL),
        Msg(role="assistant", content="Done, anything else?", usage=USAGE, model=AGENT_MODEL),
        Msg(role="user", content=STOP, usage=USAGE, model=USER_MODEL, stop=True),
    ]


def _tau2_messages(messages: list[Msg]) -> list[Any]:
    """The same conversation built directly as tau2 messages (not from events)."""
    from tau2.data_model.message import AssistantMessage, ToolCall, ToolMessage, UserMessage

    out: list[Any] = []
    for i, m in enumerate(messages):
        calls = [
            ToolCall(id=f"c{i}{j}", name=c.name, arguments=c.arguments, requestor=m.role)
            for j, c in enumerate(m.calls)
        ]
        kind = UserMessage if m.role == "user" else AssistantMessage
        out.append(kind(role=m.role, content=m.content, tool_calls=calls or None))
        for call, c in zip(calls, m.calls, strict=True):
            out.append(ToolMessage(id=call.id, role="tool", content=c.result, error=c.error))
    return out


def _evaluate(task_id: str, messages: list[Any]) -> dict[str, Any]:
    """tau2's evaluator on a trajectory: the reward_info the engine would have logged."""
    from tau2.data_model.simulation import SimulationRun, TerminationReason
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation
    from tau2.registry import registry

    task = next(t for t in registry.get_tasks_loader("mock")(None) if t.id == task_id)
    sim = SimulationRun(
        id="probe",
        task_id=task_id,
        start_time="",
        end_time="",
        duration=0.0,
        termination_reason=TerminationReason.USER_STOP,
        messages=messages,
    )
    info = evaluate_simulation(sim, task, EvaluationType.ALL, solo_mode=False, domain="mock")
    return info.model_dump(mode="json")


# (task, sample) -> (tool arguments, status); the arguments decide the real reward.
GOOD = {"user_id": "user_1", "title": "Important Meeting"}
BAD = {"user_id": "user_1", "title": "Some other meeting"}
UPDATE_GOOD = {"task_id": "task_1", "status": "completed"}
UPDATE_BAD = {"task_id": "task_1", "status": "pending"}
PLAN = [
    ("create_task_1", 0, "create_task", GOOD, "completed"),
    ("create_task_1", 1, "create_task", BAD, "completed"),
    ("create_task_1", 2, "create_task", GOOD, "completed"),
    ("update_task_1", 0, "update_task_status", UPDATE_GOOD, "completed"),
    ("update_task_1", 1, "update_task_status", UPDATE_GOOD, "completed"),
    ("update_task_1", 2, "update_task_status", UPDATE_BAD, "max_steps"),
    ("update_task_1", 3, "update_task_status", UPDATE_GOOD, "infra_error"),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("export")
    episodes = []
    for index, (task_id, sample, tool, args, status) in enumerate(PLAN):
        messages = _conversation(task_id, args, tool)
        info = _evaluate(task_id, _tau2_messages(messages))
        reward = info["reward"] if status == "completed" else 0.0
        if status == "max_steps":
            info = {"reward": 0.0, "reward_basis": None, "info": {"note": "max steps"}}
        episodes.append(
            Episode(
                task_id=task_id,
                sample=sample,
                status=status,
                reward=reward,
                messages=tuple(messages),
                reward_info=info,
                start_s=index * 0.5,
                policy="openai",
            )
        )
    events = tmp / "events.jsonl"
    write_events(
        events,
        episodes,
        config={"domain": "mock", "temperature": 0.0, "seed": 11, "max_errors": 10},
    )
    out = tmp / "results.json"
    code = main_analyze([str(events), "--json", "--export-tau2", str(out)])
    assert code == 0
    return out, events_json(events), events


def events_json(events: Path) -> dict[str, Any]:
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main_analyze([str(events), "--json"]) == 0
    return orjson.loads(buffer.getvalue())


def test_plan_has_real_successes_and_failures(exported: tuple[Path, dict[str, Any], Path]) -> None:
    _, summary, _ = exported
    rows = {t["task_id"]: t for t in summary["tasks"]}
    assert rows["create_task_1"]["successes"] == 2 and rows["create_task_1"]["samples"] == 3
    assert rows["update_task_1"]["successes"] == 2 and rows["update_task_1"]["samples"] == 3


def test_export_loads_in_tau2_results_and_metrics_agree(
    exported: tuple[Path, dict[str, Any], Path],
) -> None:
    from tau2.data_model.simulation import Results
    from tau2.metrics.agent_metrics import compute_metrics

    path, summary, _ = exported
    results = Results.load(path)
    assert len(results.simulations) == summary["episodes"]["counted"] == 6
    metrics = compute_metrics(results)
    assert metrics.avg_reward == pytest.approx(summary["reward"]["mean"])
    assert {str(k): v for k, v in metrics.pass_hat_ks.items()} == pytest.approx(summary["pass_hat_k"])
    assert list(summary["pass_hat_k"]) == ["1", "2", "3"]


def test_exported_trajectories_rescore_to_the_recorded_reward(
    exported: tuple[Path, dict[str, Any], Path],
) -> None:
    from tau2.data_model.simulation import Results
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

    results = Results.load(exported[0])
    tasks = {t.id: t for t in results.tasks}
    assert set(tasks) == {"create_task_1", "update_task_1"}
    for sim in results.simulations:
        assert sim.reward_info is not None
        again = evaluate_simulation(
            sim, tasks[sim.task_id], EvaluationType.ALL, solo_mode=False, domain="mock"
        )
        assert again.reward == sim.reward_info.reward


def test_export_rebuilds_messages_tools_and_info(
    exported: tuple[Path, dict[str, Any], Path],
) -> None:
    from tau2.data_model.message import AssistantMessage, ToolMessage, UserMessage
    from tau2.data_model.simulation import Results, TerminationReason

    results = Results.load(exported[0])
    sim = next(s for s in results.simulations if s.task_id == "create_task_1" and s.trial == 1)
    kinds = [type(m) for m in sim.messages]
    assert kinds == [AssistantMessage, UserMessage, AssistantMessage, ToolMessage,
                     AssistantMessage, UserMessage]  # fmt: skip
    call = sim.messages[2].tool_calls[0]  # type: ignore[union-attr]
    tool_message = sim.messages[3]
    assert isinstance(tool_message, ToolMessage)
    assert call.name == "create_task" and call.arguments == BAD
    assert tool_message.id == call.id and "Some other meeting" in (tool_message.content or "")
    assert [m.turn_idx for m in sim.messages] == list(range(6))
    assert sim.termination_reason == TerminationReason.USER_STOP
    assert sim.reward_info is not None and sim.reward_info.reward == 0.0
    cut = next(s for s in results.simulations if s.task_id == "update_task_1" and s.trial == 2)
    assert cut.termination_reason == TerminationReason.MAX_STEPS
    info = results.info
    assert info.num_trials == 3 and info.max_errors == 10 and info.seed == 11
    assert info.agent_info.llm == AGENT_MODEL and info.user_info.llm == USER_MODEL
    assert info.agent_info.llm_args == {"temperature": 0.0, "seed": 11}
    assert info.environment_info.domain_name == "mock" and info.environment_info.policy


def test_export_of_several_domains_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "e.jsonl"
    write_events(
        events,
        [
            Episode(task_id="create_task_1", sample=0),
            Episode(task_id="x", sample=0, domain="airline"),
        ],
    )
    code = main_analyze([str(events), "--export-tau2", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "airline, mock" in err


def test_export_of_unknown_task_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "e.jsonl"
    write_events(events, [Episode(task_id="no_such_task", sample=0)])
    assert main_analyze([str(events), "--export-tau2", str(tmp_path / "r.json")]) == 2
    assert "'no_such_task'" in capsys.readouterr().err
