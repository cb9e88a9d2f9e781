"""--resume and the episode fingerprint: what is done, what is rerun, and the same identity
in resume and analysis."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine import resume
from engine.analysis.load import load_events
from engine.cli import main
from engine.config import Endpoint, EpisodeSpec, PolicyConfig, Sampling, UserConfig, plan_episodes
from engine.events import read_events
from engine.fingerprint import fingerprint, of_spec
from tests.fake_openai_server import FakeOpenAI, distinct_ticket_tasks, gold_agent

MOCK = ["run", "--domain", "mock"]
"""9 tasks; with --max-steps 3 the oracle ends 6 completed and 3 max_steps."""


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def _ends(path: Path) -> list[dict[str, Any]]:
    return [e for e in read_events(path) if e["event"] == "episode_end"]


def _statuses(events: list[dict[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(e["status"] for e in events)


# --- the fingerprint --------------------------------------------------------------------

STAMP = {"data_hash": "sha256:aa", "tau2_version": "1", "judge_model": None}
BASE = EpisodeSpec(
    domain="telecom",
    task_id="t1",
    solo_mode=False,
    policy=PolicyConfig(name="openai", endpoint=Endpoint(base_url="http://a/v1", model="m1")),
    user=UserConfig(kind="llm", endpoint=Endpoint(base_url="http://u/v1", model="u1")),
)

OUTCOME_CHANGES = {
    "domain": dict(domain="airline"),
    "task": dict(task_id="t2"),
    "split": dict(split="train"),
    "sample": dict(sample=1),
    "seed": dict(seed=3),
    "solo_mode": dict(solo_mode=True),
    "max_steps": dict(max_steps=7),
    "max_errors": dict(max_errors=2),
    "think_tool": dict(think_tool=True),
    "policy": dict(policy=PolicyConfig(name="oracle")),
    "model": dict(
        policy=dataclasses.replace(BASE.policy, endpoint=Endpoint(base_url="http://a/v1", model="m2"))
    ),
    "temperature": dict(policy=dataclasses.replace(BASE.policy, sampling=Sampling(temperature=0.2))),
    "top_p": dict(policy=dataclasses.replace(BASE.policy, sampling=Sampling(top_p=0.9))),
    "max_tokens": dict(policy=dataclasses.replace(BASE.policy, sampling=Sampling(max_completion_tokens=5))),
    "sampling_seed": dict(policy=dataclasses.replace(BASE.policy, sampling=Sampling(seed=1))),
    "extra_body": dict(policy=dataclasses.replace(BASE.policy, sampling=Sampling(extra_body={"a": 1}))),
    "user_kind": dict(user=UserConfig(kind="scripted")),
    "user_model": dict(
        user=dataclasses.replace(BASE.user, endpoint=Endpoint(base_url="http://u/v1", model="u2"))
    ),
    "user_args": dict(user=dataclasses.replace(BASE.user, request_args={"temperature": 0.5})),
}

SAME_OUTCOME = {
    "base_url": dict(
        policy=dataclasses.replace(BASE.policy, endpoint=Endpoint(base_url="http://b/v1", model="m1"))
    ),
    "api_key": dict(
        policy=dataclasses.replace(
            BASE.policy, endpoint=Endpoint(base_url="http://a/v1", model="m1", api_key="k")
        )
    ),
    "latency": dict(policy=dataclasses.replace(BASE.policy, latency_ms=250.0)),
    "timeout": dict(timeout_s=30.0),
    "data_path": dict(data_dir="/somewhere/else"),
    "user_base_url": dict(
        user=dataclasses.replace(BASE.user, endpoint=Endpoint(base_url="http://v/v1", model="u1"))
    ),
}


@pytest.mark.parametrize("change", list(OUTCOME_CHANGES.values()), ids=list(OUTCOME_CHANGES))
def test_every_outcome_field_changes_the_fingerprint(change: dict[str, Any]) -> None:
    assert fingerprint(dataclasses.replace(BASE, **change), STAMP) != fingerprint(BASE, STAMP)


@pytest.mark.parametrize("change", list(SAME_OUTCOME.values()), ids=list(SAME_OUTCOME))
def test_fields_that_do_not_change_the_outcome_keep_the_fingerprint(change: dict[str, Any]) -> None:
    assert fingerprint(dataclasses.replace(BASE, **change), STAMP) == fingerprint(BASE, STAMP)


@pytest.mark.parametrize("field", ["data_hash", "tau2_version", "judge_model"])
def test_other_task_data_evaluator_or_judge_changes_the_fingerprint(field: str) -> None:
    assert fingerprint(BASE, {**STAMP, field: "other"}) != fingerprint(BASE, STAMP)


def test_noise_counts_for_the_noisy_oracle_only() -> None:
    noisy = dataclasses.replace(BASE, policy=PolicyConfig(name="noisy-oracle", noise=0.1))
    assert fingerprint(noisy, STAMP) != fingerprint(
        dataclasses.replace(noisy, policy=PolicyConfig(name="noisy-oracle", noise=0.5)), STAMP
    )
    oracle = dataclasses.replace(BASE, policy=PolicyConfig(name="oracle", noise=0.1))
    assert fingerprint(oracle, STAMP) == fingerprint(
        dataclasses.replace(oracle, policy=PolicyConfig(name="oracle", noise=0.5)), STAMP
    )


def test_solo_episodes_ignore_the_user() -> None:
    solo = dataclasses.replace(BASE, solo_mode=True)
    assert fingerprint(solo, STAMP) == fingerprint(dataclasses.replace(solo, user=UserConfig()), STAMP)


# --- resume decisions -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retry_policy_failures", "rerun"),
    [
        ("completed", False, False),
        ("max_steps", False, False),
        ("agent_error", False, False),
        ("infra_error", False, True),
        ("timeout", False, True),
        ("cancelled", False, True),
        ("completed", True, False),
        ("max_steps", True, True),
        ("agent_error", True, True),
        ("infra_error", True, True),
    ],
)
def test_done_means_a_status_the_policy_produced(
    status: str, retry_policy_failures: bool, rerun: bool
) -> None:
    [spec] = plan_episodes(domain="mock", limit=1)
    found = resume.Recorded(by_fingerprint={of_spec(spec): status})
    result = resume.plan([spec], found, retry_policy_failures=retry_policy_failures)
    assert (result.todo == [spec]) is rerun


def test_latest_attempt_of_a_fingerprint_decides(tmp_path: Path) -> None:
    [spec] = plan_episodes(domain="mock", limit=1)
    path = tmp_path / "e.jsonl"
    lines = [
        {"event": "episode_end", "fingerprint": of_spec(spec), "status": s} for s in ("completed", "timeout")
    ]
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    assert resume.plan([spec], resume.recorded(path)).todo == [spec]


# --- the CLI ----------------------------------------------------------------------------


def test_resume_after_max_steps_episodes_reruns_none_of_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "E.jsonl"
    args = [*MOCK, "--max-steps", "3", "--events", str(events)]
    _run(capsys, *args)
    first = _ends(events)
    assert _statuses(first) == {"completed": 6, "max_steps": 3}
    assert all(isinstance(e["fingerprint"], str) and len(e["fingerprint"]) == 16 for e in first)
    starts = [e for e in read_events(events) if e["event"] == "episode_start"]
    assert sorted(e["fingerprint"] for e in starts) == sorted(e["fingerprint"] for e in first)
    assert len({e["fingerprint"] for e in first}) == 9
    out = _run(capsys, *args, "--resume")
    assert f"resume: 9 of 9 episodes already done in {events} (completed 6, max_steps 3)" in out
    assert _ends(events) == first


def test_retry_policy_failures_reruns_max_steps_episodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "E.jsonl"
    args = [*MOCK, "--max-steps", "3", "--events", str(events)]
    _run(capsys, *args)
    out = _run(capsys, *args, "--resume", "--retry-policy-failures")
    assert f"resume: 6 of 9 episodes already done in {events} (completed 6)" in out
    ends = _ends(events)
    assert len(ends) == 12
    rerun = ends[9:]
    assert {e["fingerprint"] for e in rerun} == {
        e["fingerprint"] for e in ends[:9] if e["status"] == "max_steps"
    }
    # analysis keeps the last attempt of each fingerprint
    store = load_events([str(events)])
    final = store.con.execute("SELECT fingerprint, episode_id FROM final").fetchall()
    assert len(final) == 9
    latest = {e["fingerprint"]: e["episode_id"] for e in ends}
    assert dict(final) == latest


def test_resume_with_another_outcome_setting_reruns_every_episode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "E.jsonl"
    _run(capsys, *MOCK, "--max-steps", "3", "--events", str(events))
    out = _run(capsys, *MOCK, "--max-steps", "4", "--events", str(events), "--resume")
    assert f"resume: 0 of 9 episodes already done in {events}" in out
    assert len(_ends(events)) == 18
    # both settings stay in the analysis: they are different episodes
    assert len(load_events([str(events)]).con.execute("SELECT * FROM final").fetchall()) == 18


def test_retry_policy_failures_without_resume_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*MOCK, "--retry-policy-failures"]) == 2
    assert "--retry-policy-failures needs --resume" in capsys.readouterr().err


TASKS = distinct_ticket_tasks("telecom")[:3]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(gold_agent(TASKS, solo_mode=True)).running() as srv:
        yield srv


def test_resume_with_another_model_reruns_every_episode(
    server: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "E.jsonl"
    args = ["run", "--domain", "telecom", "--solo", "on", "--policy", "openai", "--base-url", server.base_url,
            "--events", str(events)]  # fmt: skip
    for task in TASKS:
        args += ["--task-id", task.id]
    _run(capsys, *args, "--model", "m1")
    assert _statuses(_ends(events)) == {"completed": 3}
    out = _run(capsys, *args, "--model", "m2", "--resume")
    assert f"resume: 0 of 3 episodes already done in {events}" in out
    out = _run(capsys, *args, "--model", "m1", "--resume")
    assert f"resume: 3 of 3 episodes already done in {events} (completed 3)" in out
    out = _run(capsys, *args, "--model", "m1", "--temperature", "0.3", "--resume")
    assert f"resume: 0 of 3 episodes already done in {events}" in out
    requests = collections.Counter(r.body["model"] for r in server.requests)
    assert set(requests) == {"m1", "m2"} and len(_ends(events)) == 9


def test_an_events_file_without_fingerprints_resumes_on_the_old_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "E.jsonl"
    args = [*MOCK, "--max-steps", "3", "--events", str(events)]
    _run(capsys, *args)
    old = []
    for event in read_events(events):
        event.pop("fingerprint", None)
        if not (event["event"] == "episode_end" and event["task_id"] == "create_task_1"):
            old.append(event)  # that episode never ended: a killed run
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in old))
    out = _run(capsys, *args, "--resume")
    assert f"resume: 8 of 9 episodes already done in {events}" in out
    assert out.count("no fingerprint") == 1 and "(8 skipped so)" in out
    assert [e["task_id"] for e in _ends(events)[8:]] == ["create_task_1"]
    # analysis: the old lines keyed on (domain, task, sample), the new one on its fingerprint
    assert len(load_events([str(events)]).con.execute("SELECT * FROM final").fetchall()) == 9
