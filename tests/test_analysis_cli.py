"""main_analyze: the terminal report, --json, --plots, and one-line errors on bad input."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from engine.analysis.cli import main_analyze
from tests.test_analysis_support import Call, Episode, write_events

TOP_LEVEL_KEYS = {
    "files", "lines", "malformed_lines", "events", "episodes", "reward", "pass_hat_k",
    "domains", "tasks", "tools", "episode_shape", "model", "failures", "retries", "runs", "stamps",
}  # fmt: skip


SECTION_TITLES = (
    "Episodes by status", "Reward (counted episodes)", "Per domain", "Per task", "Tool usage",
    "Per episode", "Model calls", "Failure taxonomy", "Runs",
)  # fmt: skip


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    episodes = [
        Episode(
            task_id=f"t{t}",
            sample=s,
            reward=1.0 if (t + s) % 2 == 0 else 0.0,
            calls=(Call(name="get_users"),),
            start_s=0.1 * (t * 2 + s),
        )
        for t in range(3)
        for s in range(2)
    ]
    episodes.append(Episode(task_id="t0", sample=2, status="timeout", reward=0.0, start_s=1))
    write_events(path, episodes, truncate_last_line=True)
    return path


def test_json_is_one_object_with_the_documented_keys(
    events: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main_analyze([str(events), "--json"]) == 0
    out = capsys.readouterr()
    doc = orjson.loads(out.out)
    assert set(doc) == TOP_LEVEL_KEYS
    assert doc["pass_hat_k"] == {"1": pytest.approx(0.5), "2": pytest.approx(0.0)}
    assert doc["reward"]["mean"] == pytest.approx(0.5) and doc["reward"]["n"] == 6
    assert doc["episodes"]["excluded"] == 1
    assert doc["malformed_lines"] == 1
    assert doc["domains"][0]["pass_hat_k"] == {"1": pytest.approx(0.5), "2": pytest.approx(0.0)}
    assert {"name", "calls", "errors", "error_rate", "latency_p50_s", "latency_p95_s",
            "latency_p99_s"} <= set(doc["tools"][0])  # fmt: skip
    assert out.err == ""


def test_terminal_report_shows_every_section(events: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_analyze([str(events)]) == 0
    out = capsys.readouterr().out
    for title in SECTION_TITLES:
        assert title in out
    assert "pass^2" in out and "95% CI" in out and "timeout" in out


def test_plots_dir_gets_every_png(events: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plots = tmp_path / "plots" / "nested"
    assert main_analyze([str(events), "--plots", str(plots), "--json"]) == 0
    names = sorted(p.name for p in plots.iterdir())
    assert names == sorted(
        f"{n}.png"
        for n in ("reward_histogram", "pass_hat_k", "task_heatmap", "latency_cdf", "in_flight",
                  "tool_errors")
    )  # fmt: skip
    for png in plots.iterdir():
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 5000
    captured = capsys.readouterr()
    orjson.loads(captured.out)
    assert "wrote 6 plots" in captured.err


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["missing.jsonl"], "'missing.jsonl'"),
        (["*.nomatch"], "'*.nomatch'"),
        (["EVENTS", "--bogus"], "--bogus"),
        (["--compare", "EVENTS"], "--compare"),
        ([], "no events files given"),
        (["EVENTS", "--html", "no/such/dir/r.html"], "no/such/dir"),
        (["EVENTS", "--plots", "EVENTS"], "--plots"),
        (["--compare", "EVENTS", "EVENTS", "--export-tau2", "r.json"], "--export-tau2"),
        (["junk.jsonl"], "junk.jsonl"),
    ],
    ids=[
        "missing",
        "glob",
        "flag",
        "compare-arity",
        "nothing",
        "html-dir",
        "plots-file",
        "export-without-events",
        "no-events",
    ],  # fmt: skip
)
def test_bad_input_is_one_stderr_line_and_exit_2(
    argv: list[str],
    needle: str,
    events: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "junk.jsonl").write_text("this is not json\n")
    argv = [str(events) if a == "EVENTS" else a for a in argv]
    assert main_analyze(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("tau2-engine analyze: error:")
    assert needle in captured.err
    assert "Traceback" not in captured.err


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_analyze(["--help"]) == 0
    assert "--export-tau2" in capsys.readouterr().out
