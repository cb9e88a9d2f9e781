from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import astuple
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.analysis.errors import InputError
from engine.analysis.load import load_events, resolve_paths
from engine.analysis.metrics import Summary, summarize
from engine.analysis.series import build_series
from tests.test_analysis_support import Call, Episode, Msg, Retry, write_events

# The final outcome of every (task, sample): (status, reward). Resumed attempts that
# came earlier are written too (see `_episodes`) and must not count.
FINAL: dict[str, list[tuple[str, float]]] = {
    "alpha": [("completed", 1.0)] * 4,
    "beta": [("completed", 1.0), ("completed", 0.0), ("completed", 1.0), ("completed", 0.5)],
    "gamma": [("max_steps", 0.0), ("agent_error", 0.0), ("completed", 1.0), ("completed", 0.0)],
    "delta": [("infra_error", 0.0), ("timeout", 0.0), ("cancelled", 0.0)],
    "epsilon": [("completed", 1.0), ("completed", 1.0), ("completed", 0.0), ("infra_error", 0.0)],
}
COUNTED = {"completed", "max_steps", "agent_error"}
T_975_DF14 = 2.144787  # Student t 0.975 quantile, 14 degrees of freedom


def _calls(task: str, sample: int) -> tuple[Call, ...]:
    return (
        Call(name="get_users", latency_s=0.01 * (sample + 1)),
        Call(name="create_task", latency_s=0.1 + 0.01 * len(task), error=sample == 1),
    )


def _episodes() -> tuple[list[Episode], list[Episode]]:
    """Run 1, then a resumed run 2 that re-ran two samples."""
    run1: list[Episode] = []
    start = 0.0
    for task, outcomes in FINAL.items():
        for sample, (status, reward) in enumerate(outcomes):
            if (task, sample) == ("beta", 1):
                status, reward = "completed", 1.0  # superseded by run 2's reward 0
            if (task, sample) == ("alpha", 2):
                status, reward = "agent_error", 0.0  # superseded by run 2's success
            run1.append(
                Episode(
                    task_id=task,
                    sample=sample,
                    status=status,
                    reward=reward,
                    calls=_calls(task, sample) if status in COUNTED else (),
                    start_s=start,
                    error_type={"infra_error": "EnvError", "timeout": "TimeoutError"}.get(status),
                    retries=(Retry(error_type="RateLimitError"),) if task == "gamma" else (),
                )
            )
            start += 0.25
    run2 = [
        Episode(task_id="beta", sample=1, reward=0.0, calls=_calls("beta", 1), start_s=100.0,
                attempt=1),
        Episode(task_id="alpha", sample=2, reward=1.0, calls=_calls("alpha", 2), start_s=100.5,
                attempt=1),
    ]  # fmt: skip
    return run1, run2


@pytest.fixture(scope="module")
def run_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path_factory.mktemp("run") / "events.jsonl"
    run1, run2 = _episodes()
    events = write_events(path, run1, run_id="run-1")
    events += write_events(path, run2, run_id="run-2", append=True)
    return path, events


@pytest.fixture(scope="module")
def summary(run_files: tuple[Path, list[dict[str, Any]]]) -> Summary:
    return summarize(load_events([str(run_files[0])]))


def _counted() -> dict[str, list[float]]:
    return {
        task: [r for s, r in outcomes if s in COUNTED]
        for task, outcomes in FINAL.items()
        if any(s in COUNTED for s, _ in outcomes)
    }


def _quantile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    h = (len(ordered) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo])


def test_mean_reward_and_ci_use_latest_counted_episodes(summary: Summary) -> None:
    rewards = [r for rs in _counted().values() for r in rs]
    assert len(rewards) == 15
    half = T_975_DF14 * statistics.stdev(rewards) / math.sqrt(15)
    assert summary.reward.n == 15
    assert summary.reward.mean == pytest.approx(statistics.mean(rewards))
    assert summary.reward.ci95_low == pytest.approx(statistics.mean(rewards) - half, abs=1e-6)
    assert summary.reward.ci95_high == pytest.approx(statistics.mean(rewards) + half, abs=1e-6)
    assert summary.reward.successes == sum(1 for r in rewards if r == 1.0)


def test_pass_hat_k_matches_enumeration_over_known_outcomes(summary: Summary) -> None:
    per_task = {t: [r == 1.0 for r in rs] for t, rs in _counted().items()}
    max_k = min(len(v) for v in per_task.values())
    assert max_k == 3  # epsilon lost a sample to infra_error
    expected = {}
    for k in range(1, max_k + 1):
        shares = []
        for outcomes in per_task.values():
            subsets = list(itertools.combinations(outcomes, k))
            shares.append(sum(all(s) for s in subsets) / len(subsets))
        expected[k] = sum(shares) / len(shares)
    assert summary.pass_hat_k == pytest.approx(expected)


def test_excluded_statuses_are_counted_but_left_out(summary: Summary) -> None:
    eps = summary.episodes
    assert eps.final == sum(len(v) for v in FINAL.values()) == 19
    assert eps.counted == 15
    assert eps.excluded == 4
    assert eps.attempts == 21
    assert eps.unfinished == 0
    by_status = {r.status: (r.final, r.all) for r in eps.by_status}
    assert by_status["completed"] == (13, 14)
    assert by_status["agent_error"] == (1, 2)
    assert by_status["infra_error"] == (2, 2)
    assert by_status["timeout"] == (1, 1)
    assert by_status["cancelled"] == (1, 1)
    delta = next(t for t in summary.tasks if t.task_id == "delta")
    assert delta.samples == 0 and delta.excluded == 3 and delta.mean_reward is None


def test_per_task_rows_are_exact(summary: Summary) -> None:
    rows = {t.task_id: t for t in summary.tasks}
    for task, rewards in _counted().items():
        assert rows[task].samples == len(rewards)
        assert rows[task].successes == sum(1 for r in rewards if r == 1.0)
        assert rows[task].mean_reward == pytest.approx(statistics.mean(rewards))
    assert [t.task_id for t in summary.tasks][:2] == ["delta", "gamma"]


def test_per_domain_row_matches_overall(summary: Summary) -> None:
    (domain,) = summary.domains
    assert domain.domain == "mock"
    assert domain.episodes == 15 and domain.excluded == 4 and domain.tasks == 4
    assert domain.mean_reward == pytest.approx(summary.reward.mean)
    assert domain.pass_hat_k == pytest.approx(summary.pass_hat_k)


def test_tool_stats_match_the_events(summary: Summary, run_files: tuple[Path, list[dict[str, Any]]]) -> None:
    calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in run_files[1]:
        if e["event"] == "tool_call":
            calls[e["name"]].append(e)
    rows = {t.name: t for t in summary.tools}
    assert rows.keys() == calls.keys()
    for name, events in calls.items():
        latencies = [e["latency_s"] for e in events]
        errors = sum(e["error"] for e in events)
        row = rows[name]
        assert row.calls == len(events)
        assert row.errors == errors
        assert row.error_rate == pytest.approx(errors / len(events))
        assert row.latency_p50_s == pytest.approx(_quantile(latencies, 0.5))
        assert row.latency_p95_s == pytest.approx(_quantile(latencies, 0.95))
        assert row.latency_p99_s == pytest.approx(_quantile(latencies, 0.99))
    assert rows["create_task"].errors > 0


def test_model_latency_and_tokens_per_role(
    summary: Summary, run_files: tuple[Path, list[dict[str, Any]]]
) -> None:
    turns = [e for e in run_files[1] if e["event"] == "turn"]
    for role in ("assistant", "user"):
        rows = [m for m in summary.model if m.role == role]
        mine = [e for e in turns if e["role"] == role]
        assert sum(m.messages for m in rows) == len(mine)
        assert sum(m.calls for m in rows) == sum(1 for e in mine if e["latency_s"] > 0)
        assert sum(m.total_tokens for m in rows) == sum(
            e["usage"]["total_tokens"] for e in mine if e["usage"]
        )
    greeting = next(m for m in summary.model if m.role == "assistant" and m.model is None)
    assert greeting.calls == 0 and greeting.latency_p50_s is None


def test_failure_taxonomy_and_retries(summary: Summary, run_files: tuple[Path, list[dict[str, Any]]]) -> None:
    ends = Counter((e["status"], e["error_type"]) for e in run_files[1] if e["event"] == "episode_end")
    assert any(status == "completed" for status, _ in ends)  # ... which the failure table leaves out
    failed = {key: n for key, n in ends.items() if key[0] != "completed"}
    assert failed and {(f.status, f.error_type): f.count for f in summary.failures} == failed
    (retry,) = summary.retries
    assert (retry.scope, retry.error_type, retry.count) == ("model_call", "RateLimitError", 4)
    assert retry.backoff_total_s == pytest.approx(2.0)


def test_runs_report_throughput_and_loop_lag(summary: Summary) -> None:
    assert [r.run_id for r in summary.runs] == ["run-1", "run-2"]
    first = summary.runs[0]
    assert first.ended and first.episodes == 19 and first.episodes_per_s == pytest.approx(1.9)
    assert first.loop_lag_p99_s == pytest.approx(0.004)
    assert first.loop_lag_max_s == pytest.approx(0.02)
    assert first.episodes_planned == 19 and first.peak_rss_mb == pytest.approx(123.5)


def test_episode_shape_counts_turns(summary: Summary) -> None:
    assert summary.episode_shape.episodes == 19
    assert summary.episode_shape.turns_max == 6


def test_truncated_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    run1, _ = _episodes()
    whole = tmp_path / "whole.jsonl"
    cut = tmp_path / "cut.jsonl"
    write_events(whole, run1)
    write_events(cut, run1, truncate_last_line=True)
    full, partial = summarize(load_events([str(whole)])), summarize(load_events([str(cut)]))
    assert partial.malformed_lines == 1 and full.malformed_lines == 0
    assert partial.lines == full.lines
    assert astuple(partial.reward) == pytest.approx(astuple(full.reward))
    assert partial.pass_hat_k == pytest.approx(full.pass_hat_k)
    assert not partial.runs[0].ended and full.runs[0].ended


def test_killed_writer_mid_episode_end_leaves_an_unfinished_episode(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    write_events(path, [Episode(task_id="a", sample=0)], run_end=False)
    write_events(
        path,
        [Episode(task_id="a", sample=1, start_s=5.0)],
        run_id="run-1b",
        append=True,
        run_end=False,
    )
    data = path.read_bytes()
    path.write_bytes(data[: data.rfind(b'"status"')])
    summary = summarize(load_events([str(path)]))
    assert summary.malformed_lines == 1
    assert summary.episodes.unfinished == 1
    assert summary.episodes.counted == 1


def test_unknown_events_and_extra_fields_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    events = write_events(path, [Episode(task_id="a", sample=0, reward=1.0)])
    extra = [
        {"event": "env_acquire", "timestamp": events[1]["timestamp"], "run_id": "run-1",
         "env_id": "pool-3", "wait_s": 0.2, "error": {"nested": [1, 2]}, "sample": "n/a"},
        {"event": "episode_end", "timestamp": events[-1]["timestamp"], "run_id": "run-1",
         "episode_id": "other", "domain": "mock", "task_id": "b", "sample": 0, "attempt": 0,
         "status": "completed", "reward": 0.0, "turns": 0, "tool_calls": 0, "duration_s": 0.1,
         "error": None, "error_type": None, "seed": 1, "policy": "oracle",
         "termination_reason": "agent_stop", "future_field": {"x": 1}},
    ]  # fmt: skip
    with open(path, "ab") as handle:
        handle.write(b"\n" + b"".join(orjson.dumps(e) + b"\n" for e in extra))
    summary = summarize(load_events([str(path)]))
    assert summary.events["env_acquire"] == 1
    assert summary.reward.n == 2 and summary.reward.mean == pytest.approx(0.5)


def test_several_files_and_globs_are_one_dataset(
    tmp_path: Path, run_files: tuple[Path, list[dict[str, Any]]]
) -> None:
    run1, run2 = _episodes()
    write_events(tmp_path / "a.jsonl", run1, run_id="run-1")
    write_events(tmp_path / "b.jsonl", run2, run_id="run-2")
    split = summarize(load_events([str(tmp_path / "*.jsonl"), str(tmp_path / "a.jsonl")]))
    joined = summarize(load_events([str(run_files[0])]))
    assert len(split.files) == 2
    assert astuple(split.reward) == pytest.approx(astuple(joined.reward))
    assert split.pass_hat_k == pytest.approx(joined.pass_hat_k)


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("missing.jsonl", "no such events file"), ("*.nothing", "no events file matches")],
)
def test_bad_paths_raise_input_error_naming_them(tmp_path: Path, pattern: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        resolve_paths([str(tmp_path / pattern)])
    assert pattern in str(info.value)


def test_a_file_without_events_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.jsonl"
    path.write_text("not json\n{broken\n")
    with pytest.raises(InputError, match="no events in"):
        load_events([str(path)])


def test_series_hold_the_heatmap_and_in_flight_curve(
    run_files: tuple[Path, list[dict[str, Any]]],
) -> None:
    series = build_series(load_events([str(run_files[0])]))
    grid = series.task_grid
    assert grid.samples == (0, 1, 2, 3) and grid.total_tasks == 5
    row = dict(zip(grid.tasks, grid.rewards, strict=True))
    assert row["mock/beta"] == (1.0, 0.0, 1.0, 0.5)
    assert row["mock/delta"] == (None, None, None, None)
    assert sum(series.reward_bins) == 15
    assert series.reward_bins[-1] == 9 and series.reward_bins[10] == 1
    assert max(n for _, n in series.in_flight) >= 2
    assert series.in_flight[-1][1] == 0
    assert {"model: assistant", "model: user", "all tools"} <= series.latency_cdfs.keys()


def test_history_replay_is_in_the_trajectory_but_not_in_call_stats(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    replayed = Call(name="get_users", latency_s=0.0)
    messages = (
        Msg(role="user", content="earlier", latency_s=0.0, history=True),
        Msg(role="assistant", calls=(replayed,), latency_s=0.0, history=True),
        Msg(role="assistant", content="Hello again", model="m", history=False),
        Msg(role="assistant", calls=(Call(name="create_task", latency_s=0.2),), model="m"),
        Msg(role="user", content="###STOP###", model="u", stop=True),
    )
    write_events(path, [Episode(task_id="a", sample=0, messages=messages)])
    summary = summarize(load_events([str(path)]))
    assert [t.name for t in summary.tools] == ["create_task"]
    assert sum(m.messages for m in summary.model) == 3
    assert summary.events["tool_call"] == 2
