import math

import pytest

from engine.results import EpisodeResult, Status, pass_hat_k


def _result(task: str, reward: float, status: Status = Status.COMPLETED) -> EpisodeResult:
    return EpisodeResult(
        episode_id=f"{task}-{reward}", domain="d", task_id=task, sample=0, reward=reward, status=status
    )


def test_pass_hat_k_matches_tau2_definition() -> None:
    results = [
        _result("a", 1.0),
        _result("a", 1.0),
        _result("a", 0.0),
        _result("b", 1.0),
        _result("b", 0.0),
        _result("b", 0.0),
    ]
    got = pass_hat_k(results)
    assert got[1] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert got[2] == pytest.approx((math.comb(2, 2) / math.comb(3, 2) + 0) / 2)
    assert got[3] == pytest.approx(0.0)


def test_discarded_statuses_are_left_out_of_pass_hat_k() -> None:
    results = [_result("a", 1.0), _result("a", 0.0, Status.INFRA_ERROR)]
    assert pass_hat_k(results) == {1: 1.0}
