"""The comparability stamp from the command line: `run --data-dir` stamps its events,
`analyze` shows the stamp, `analyze --compare` refuses runs whose stamps differ, `rescore`
re-grades a run on other task data."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from engine import taskdata
from engine.cli import main
from engine.events import read_events
from engine.stamp import FIELDS

V101 = str(Path(__file__).parent / "data" / "tau2-v1.0.1")
TASKS = ["--task-id", "2", "--task-id", "7", "--task-id", "5"]  # 2, 7 changed upstream; 5 not


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {
        "package": root / "package.jsonl",
        "package-again": root / "package-again.jsonl",
        "v101": root / "v101.jsonl",
    }
    for name, path in out.items():
        data = ["--data-dir", V101] if name == "v101" else []
        assert main(["run", "--domain", "airline", *TASKS, *data, "--events", str(path)]) == 0
    return out


def test_run_stamps_run_start_and_every_episode(runs: dict[str, Path]) -> None:
    events = list(read_events(runs["v101"]))
    (run_start,) = [e for e in events if e["event"] == "run_start"]
    (stamp,) = run_start["stamps"]
    assert list(stamp) == list(FIELDS)
    assert stamp["data_source"] == str(Path(V101).resolve())
    assert stamp["data_hash"] == taskdata.data_hash(stamp["data_source"], "airline")
    assert stamp["control"] == "dual" and stamp["user"] == "scripted" and stamp["judge_model"] is None
    episodes = [e for e in events if e["event"] in ("episode_start", "episode_end")]
    assert len(episodes) == 6 and all(e["stamp"] == stamp for e in episodes)
    package = next(e for e in read_events(runs["package"]) if e["event"] == "run_start")["stamps"][0]
    assert package["data_source"] == "package" and package["data_hash"] != stamp["data_hash"]
    assert {k: v for k, v in package.items() if k not in ("data_source", "data_hash")} == {
        k: v for k, v in stamp.items() if k not in ("data_source", "data_hash")
    }


def test_analyze_shows_the_stamp(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(runs["v101"])]) == 0
    out = capsys.readouterr().out
    assert "Comparability stamp" in out and str(Path(V101).resolve()) in out and "sha256:" in out
    assert main(["analyze", str(runs["v101"]), "--json"]) == 0
    (row,) = orjson.loads(capsys.readouterr().out)["stamps"]
    assert (
        row["domain"] == "airline"
        and row["episodes"] == 3
        and row["stamp"]["data_source"] == str(Path(V101).resolve())
    )


def test_analyze_flags_mixed_stamps_in_one_run(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(runs["v101"]), str(runs["package"])]) == 0
    assert "WARNING: episodes of airline have different stamps" in capsys.readouterr().out


def test_compare_refuses_runs_on_different_task_data(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", "--compare", str(runs["package"]), str(runs["v101"])]) == 2
    err = capsys.readouterr().err
    assert "not comparable" in err and "data_hash" in err and "--allow-incomparable" in err


def test_compare_anyway_flags_it_loudly(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    args = ["analyze", "--compare", str(runs["package"]), str(runs["v101"]), "--allow-incomparable"]
    assert main(args) == 0
    assert "WARNING: NOT COMPARABLE" in capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    compare = orjson.loads(capsys.readouterr().out)["compare"]
    assert compare["stamp_differences"] and "data_hash" in compare["stamp_differences"][0]


def test_compare_runs_with_equal_stamps(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", "--compare", str(runs["package"]), str(runs["package-again"]), "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out)["compare"]["stamp_differences"] == []


def test_compare_refuses_a_stamped_run_against_an_unstamped_one(
    runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.jsonl"
    with old.open("w") as handle:
        for event in read_events(runs["package"]):
            event.pop("stamp", None)
            event.pop("stamps", None)
            handle.write(json.dumps(event) + "\n")
    assert main(["analyze", "--compare", str(old), str(runs["package"])]) == 2
    assert "has no comparability stamp" in capsys.readouterr().err
    assert main(["analyze", "--compare", str(old), str(old)]) == 0  # nothing to tell them apart


def test_rescore_regrades_a_run_on_other_task_data(
    runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rescore", str(runs["package"]), "--data-dir", V101, "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["data_source"] == str(Path(V101).resolve())
    assert report["summary"]["episodes"] == 3 and report["summary"]["changed"] == 2
    changed = {e["task_id"] for e in report["episodes"] if e["changed"]}
    assert changed == {"2", "7"}
    assert main(["rescore", str(runs["package"]), "--data-dir", V101]) == 0
    assert "2 changed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--data-dir", "/nonexistent/tau2"], "data_dir '/nonexistent/tau2' is not a directory"),
        (["tasks", "--domain", "airline", "--data-dir", "/"], "is not in tau2-bench's layout"),
        (["run", "--judge-model", "m"], "judge model 'm' needs an endpoint"),
        (["run", "--judge-base-url", "http://127.0.0.1:9/v1"], "needs a judge model"),
        (["rescore", "/nonexistent/events.jsonl"], "no such events file"),
    ],
    ids=["missing-dir", "wrong-layout", "judge-without-url", "judge-without-model", "rescore-no-file"],
)
def test_bad_flags_are_one_line_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_data_dir_from_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TAU2_DATA_DIR", V101)
    assert main(["tasks", "--domain", "mock"]) == 0
    assert len(capsys.readouterr().out.split()) == 10  # v1.0.1 has a tenth mock task
    monkeypatch.delenv("TAU2_DATA_DIR")
    assert main(["tasks", "--domain", "mock"]) == 0
    assert len(capsys.readouterr().out.split()) == 9


def test_run_warns_when_judged_tasks_have_no_judge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine import catalog, scoring

    judged = next(t.id for t in catalog.task_set("retail", None, taskdata.check_data_dir(V101)).tasks
                  if scoring.needs_judge(t))  # fmt: skip
    events = tmp_path / "retail.jsonl"
    args = ["run", "--domain", "retail", "--task-id", judged, "--task-id", "12", "--data-dir", V101]
    assert main([*args, "--events", str(events)]) == 0
    assert "1 tasks are scored on NL assertions and no judge is configured" in capsys.readouterr().out
    ends = {e["task_id"]: e for e in read_events(events) if e["event"] == "episode_end"}
    assert ends[judged]["status"] == "infra_error" and "no judge is configured" in ends[judged]["error"]
    assert ends["12"]["status"] == "completed"  # NL_ASSERTION basis without assertions: no judge needed
