"""--compare A B: per-task mean reward deltas."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from engine.analysis.cli import main_analyze
from engine.analysis.compare import compare_runs
from engine.analysis.load import load_events
from engine.analysis.metrics import summarize
from tests.test_analysis_support import Episode, write_events

A = {"t1": [1.0, 1.0, 0.0], "t2": [0.0, 0.0, 0.0], "t3": [1.0, 1.0, 1.0], "only_a": [1.0]}
B = {"t1": [1.0, 1.0, 1.0], "t2": [0.0, 0.5, 0.0], "t3": [1.0, 0.0, 1.0], "only_b": [0.0]}


def _write(path: Path, rewards: dict[str, list[float]]) -> Path:
    episodes = [
        Episode(task_id=task, sample=s, reward=r, start_s=0.1 * i)
        for i, (task, rs) in enumerate(rewards.items())
        for s, r in enumerate(rs)
    ]
    write_events(path, episodes)
    return path


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    return _write(tmp_path / "a.jsonl", A), _write(tmp_path / "b.jsonl", B)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_deltas_are_b_minus_a_per_task(runs: tuple[Path, Path]) -> None:
    result = compare_runs(summarize(load_events([str(runs[0])])), summarize(load_events([str(runs[1])])))
    rows = {d.task_id: d for d in result.tasks}
    for task in ("t1", "t2", "t3"):
        assert rows[task].delta == pytest.approx(_mean(B[task]) - _mean(A[task]))
        assert rows[task].a_samples == 3 and rows[task].b_samples == 3
    assert rows["only_a"].delta is None and rows["only_a"].b_mean_reward is None
    assert rows["only_b"].delta is None and rows["only_b"].a_samples == 0
    assert (result.improved, result.regressed, result.unchanged) == (2, 1, 0)
    assert (result.only_a, result.only_b, result.common_tasks) == (1, 1, 3)
    assert [d.task_id for d in result.tasks][:3] == ["t3", "t2", "t1"]
    expected = _mean([_mean(B[t]) - _mean(A[t]) for t in ("t1", "t2", "t3")])
    assert result.mean_task_delta == pytest.approx(expected)


def test_compare_alone_prints_json_with_compare_key(
    runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main_analyze(["--compare", str(runs[0]), str(runs[1]), "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert list(doc) == ["compare"]
    rows = {r["task_id"]: r for r in doc["compare"]["tasks"]}
    assert rows["t3"]["delta"] == pytest.approx(-1 / 3)
    assert doc["compare"]["a_mean_reward"] == pytest.approx(_mean([r for v in A.values() for r in v]))


def test_compare_with_events_adds_the_table(
    runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main_analyze([str(runs[1]), "--compare", str(runs[0]), str(runs[1])]) == 0
    out = capsys.readouterr().out
    assert "Per-task mean reward, B - A" in out and "-0.333" in out and "Per domain" in out
