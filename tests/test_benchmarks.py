"""The benchmarks' stock side is really stock tau2 and really solves the tasks: a broken
script would make every comparison meaningless (fast because nothing is scored)."""

from __future__ import annotations

import pytest

from benchmarks import stock_runner
from engine import catalog


@pytest.mark.parametrize(
    ("domain", "n_tasks", "solo_mode"),
    [("telecom", 2, True), ("airline", 1, False)],
    ids=["telecom-solo", "airline-with-user"],
)
def test_stock_runner_solves_tasks_through_tau2s_own_runner(
    domain: str, n_tasks: int, solo_mode: bool
) -> None:
    tasks = list(catalog.task_set(domain, None).tasks)[:n_tasks]
    wall, rewards = stock_runner.run_stock(
        domain, tasks, solo_mode=solo_mode, trials=2, concurrency=2, latency_s=0.0
    )
    assert rewards == [1.0] * (2 * n_tasks)
    assert wall > 0


def test_stock_runner_scores_a_wrong_script_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stock_runner, "_gold", lambda task: [])  # no gold actions played
    tasks = [t for t in catalog.task_set("telecom", None).tasks if t.evaluation_criteria.actions][:1]
    _, rewards = stock_runner.run_stock(
        "telecom", tasks, solo_mode=True, trials=1, concurrency=1, latency_s=0.0
    )
    assert rewards == [0.0]


def test_readme_table_marks_targets_not_met(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import json

    from benchmarks import readme_table

    lag = {"p50": 0.001, "p99": 0.2, "max": 1.0, "samples": 10}
    wave = {"wall_s": 80.0, "packing_efficiency": 0.6, "cpu_ms_per_episode": 6.0, "loop_lag_s": lag,
            "mean_reward": 1.0}
    records = [
        {"bench": "packing_telecom_10000", "date": "d", "load_avg_1m": 1.0, "peak_rss_mb": 3000.0,
         "setup": {"in_flight": 10000, "latency_ms": 10000.0, "model_calls_per_episode": 5},
         "cli": {"cold": wave, "warm": wave, "peak_rss_mb": 3000.0},
         "library": {"cold": wave, "warm": {**wave, "packing_efficiency": 0.95, "cpu_ms_per_episode": 2.9,
                                            "loop_lag_s": {**lag, "p99": 0.01}}, "peak_rss_mb": 3000.0}},
        {"bench": "model_overhead", "date": "d", "load_avg_1m": 1.0, "concurrency": 1000,
         "overhead_ms": 0.4, "episode_ms": 1.0, "raw_ms": 0.6},
        {"bench": "model_overhead", "date": "d", "load_avg_1m": 1.0, "concurrency": 1000,
         "setup": {"endpoint": "tests.fake_openai_server in a process of its own"},
         "overhead_ms": 0.7, "episode_ms": 2.0, "raw_ms": 1.3, "cpu_ms": 2.5, "raw_cpu_ms": 1.1,
         "overhead_cpu_ms": 1.4, "calls_per_s": 400.0, "raw_calls_per_s": 700.0},
    ]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(json.dumps(r) for r in records)))
    readme_table.main()
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == 4
    assert "10000 telecom episodes in flight" in rows[0] and "as the CLI runs" in rows[0]
    assert "**not met**" in rows[0] and "6.0 ms** CPU" in rows[0]
    assert "library embedded" in rows[1] and rows[1].endswith("<= 3 ms CPU: met |")
    assert "1000 in flight" in rows[2] and rows[2].endswith("<= 0.5 ms at 1,000: met |")
    assert "endpoint in its own process" in rows[3] and "CPU **1.4 ms**" in rows[3]
    assert rows[3].endswith("<= 0.5 ms at 1,000: **not met** |")
