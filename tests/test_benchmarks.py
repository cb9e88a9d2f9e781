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
