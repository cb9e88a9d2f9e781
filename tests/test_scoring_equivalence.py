"""engine.scoring gives exactly stock tau2's `evaluate_simulation` result: same reward
and same RewardInfo, on every task of every domain (gold trajectory), and on perturbed
trajectories (last action dropped, one argument changed).

Stock scoring is slow (airline ~0.6 s a call: two environments from the files and two
7 MB hashes), so it runs in a 2-process pool with the databases' JSON parsed once per
process (`DB.load` memoized, returning a fresh copy: the same object stock parses), and
stock checks the perturbed cases of every 10th airline and retail task and every
2nd telecom task (fast scoring runs on all of them).
"""

from __future__ import annotations

import functools
import multiprocessing
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import catalog, scoring, taskdata
from engine.envs import tau2_cache
from tests.scoring_cases import Case, cases

PERTURB_EVERY = {"airline": 10, "retail": 10, "telecom": 2, "mock": 1}


def _memoize_db_load() -> None:
    from tau2.environment.db import DB

    if getattr(DB.load, "_memoized", False):
        return
    parsed: dict[tuple[type, str], bytes] = {}
    original = DB.load.__func__  # type: ignore[attr-defined]

    @functools.wraps(original)
    def load(cls: type, path: str) -> Any:
        key = (cls, str(path))
        if key not in parsed:
            parsed[key] = pickle.dumps(original(cls, path))
        return pickle.loads(parsed[key])

    load._memoized = True  # type: ignore[attr-defined]
    DB.load = classmethod(load)  # type: ignore[assignment,method-assign]


def _outcome(evaluate: Any, case: Case) -> tuple[str, Any]:
    from tau2.data_model.simulation import SimulationRun

    simulation = SimulationRun(
        id="case", task_id=case.task.id, start_time="", end_time="", duration=0.0,
        termination_reason=case.termination, messages=case.messages,  # type: ignore[arg-type]
    )
    try:
        info = evaluate(simulation, case.task, case.solo_mode, case.domain)
    except Exception as exc:  # both scorers must fail the same way on a bad trajectory
        return ("error", f"{type(exc).__name__}: {exc}")
    return ("ok", info.model_dump(mode="json"))


def _stock(case: Case) -> tuple[str, Any]:
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation

    _memoize_db_load()
    return _outcome(
        lambda sim, task, solo, domain: evaluate_simulation(sim, task, EvaluationType.ALL, solo, domain), case
    )


def _fast(case: Case) -> tuple[str, Any]:
    return _outcome(scoring.evaluate_simulation, case)


def domain_cases(domain: str) -> Iterator[tuple[Case, bool]]:
    """Every case of the domain, and whether stock scoring checks it."""
    for index, task in enumerate(catalog.task_set(domain).tasks):
        for case in cases(domain, task, solo_mode=catalog.default_solo_mode(task)):
            yield case, case.variant == "gold" or index % PERTURB_EVERY[domain] == 0
    for task in catalog.task_set(domain).tasks[:3]:  # premature end: no environment at all
        for case in cases(domain, task, solo_mode=catalog.default_solo_mode(task), perturb=False):
            yield Case(domain, task, case.solo_mode, "max-steps", case.messages, "max_steps"), True


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    with multiprocessing.get_context("fork").Pool(2) as workers:
        yield workers


@pytest.mark.parametrize("domain", catalog.DOMAINS)
def test_fast_scoring_equals_stock_evaluate_simulation(domain: str, pool: Any) -> None:
    all_cases = list(domain_cases(domain))
    checked = [case for case, stock in all_cases if stock]
    stock = pool.map(_stock, checked, chunksize=4)
    fast = [_fast(case) for case in checked]
    mismatches = [case.id for case, a, b in zip(checked, fast, stock, strict=True) if a != b]
    assert not mismatches, f"fast != stock for {mismatches[:10]}"
    assert {case.task.id for case in checked if case.variant == "gold"} == set(catalog.task_set(domain).ids)
    assert any(a[0] == "ok" and a[1]["reward"] == 0.0 for a in fast), "no perturbation changed a reward"
    for case, _ in all_cases:  # the unchecked cases still score without error
        _fast(case)


@pytest.mark.parametrize("domain", catalog.DOMAINS)
def test_scoring_leaves_the_shared_database_unchanged(domain: str) -> None:
    for case, _ in domain_cases(domain):
        _fast(case)
    assets = tau2_cache.domain_assets(domain)
    fresh, fresh_user = taskdata.load_databases(None, domain)
    assert assets.db.base.get_hash() == fresh.get_hash()
    if assets.user_db is not None and fresh_user is not None:
        assert assets.user_db.base.get_hash() == fresh_user.get_hash()


V101 = taskdata.check_data_dir(str(Path(__file__).parent / "data" / "tau2-v1.0.1"))
V101_CHANGED_AIRLINE = ["2", "7", "9", "23", "27", "29", "33", "35", "37", "38", "44"]


def _fast_v101(case: Case) -> tuple[str, Any]:
    def evaluate(sim: Any, task: Any, solo: bool, domain: str) -> Any:
        return scoring.evaluate_simulation(sim, task, solo, domain, data_dir=V101)

    return _outcome(evaluate, case)


def test_fast_scoring_on_a_data_dir_equals_stock_on_its_tasks(pool: Any) -> None:
    """Upstream v1.0.1's airline tasks whose gold actions changed (same database as the
    package's): the engine's scorer over the data directory == stock on those tasks."""
    tasks = [catalog.get_task("airline", t, None, V101) for t in V101_CHANGED_AIRLINE]
    every = [case for task in tasks for case in cases("airline", task, solo_mode=False)]
    checked = [case for case in every if case.variant != "change-arg"]
    stock = pool.map(_stock, checked, chunksize=2)
    fast = [_fast_v101(case) for case in checked]
    assert [c.id for c, a, b in zip(checked, fast, stock, strict=True) if a != b] == []
    assert {a[1]["reward"] for a in fast} == {0.0, 1.0}
