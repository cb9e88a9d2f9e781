"""engine.envs.tau2_cache and engine.envs.cow: environments equal to tau2's own, copies
that never write the shared database, and state comparison equal to tau2's hash."""

from __future__ import annotations

import pytest

from engine import tau2lib
from engine.envs import cow, tau2_cache

MODES = [("airline", False), ("retail", False), ("telecom", True), ("telecom", False), ("mock", True),
         ("mock", False)]


@pytest.mark.parametrize(("domain", "solo_mode"), MODES, ids=[f"{d}-solo{s}" for d, s in MODES])
def test_new_environment_equals_tau2_constructor(domain: str, solo_mode: bool) -> None:
    stock = tau2lib.load().registry.get_env_constructor(domain)(solo_mode=solo_mode)
    fast = tau2_cache.new_environment(domain, solo_mode=solo_mode)
    assert type(fast) is type(stock)
    assert fast.domain_name == stock.domain_name and fast.policy == stock.policy
    assert fast.solo_mode == stock.solo_mode
    assert type(fast.tools) is type(stock.tools) and type(fast.user_tools) is type(stock.user_tools)
    assert fast.get_db_hash() == stock.get_db_hash()
    assert fast.get_user_db_hash() == stock.get_user_db_hash()


def test_unsupported_solo_mode_raises_as_tau2() -> None:
    with pytest.raises(ValueError, match="does not support solo mode"):
        tau2_cache.new_environment("airline", solo_mode=True)


def test_environments_do_not_share_written_records() -> None:
    first = tau2_cache.new_environment("airline", solo_mode=False)
    second = tau2_cache.new_environment("airline", solo_mode=False)
    user_id = next(iter(first.tools.db.users))
    first.tools.db.users[user_id].reservations.append("NEW123")
    assert "NEW123" not in second.tools.db.users[user_id].reservations
    assert "NEW123" not in tau2_cache.domain_assets("airline").db.base.users[user_id].reservations


def test_cow_dict_copies_a_record_on_first_access_by_key() -> None:
    base = {"a": [1], "b": [2]}
    view = cow.CowDict(base)
    view["a"].append(9)
    view.setdefault("c", [3])
    view.pop("b")
    assert base == {"a": [1], "b": [2]}
    assert dict(view.items()) == {"a": [1, 9], "c": [3]}
    assert view.touched == {"a", "b", "c"}


def _same_by_hash(domain: str, env: object, other: object) -> bool:
    return env.get_db_hash() == other.get_db_hash()  # type: ignore[attr-defined]


@pytest.mark.parametrize("change", ["none", "write", "read", "add", "delete", "write-back"])
def test_same_state_agrees_with_tau2_hash(change: str) -> None:
    shared = tau2_cache.domain_assets("retail").db
    gold = tau2_cache.new_environment("retail", solo_mode=False)
    predicted = tau2_cache.new_environment("retail", solo_mode=False)
    order_id = next(iter(gold.tools.db.orders))
    gold.tools.db.orders[order_id].status = "cancelled"
    if change == "write":
        predicted.tools.db.orders[order_id].status = "delivered"
    elif change == "read":
        assert predicted.tools.db.orders[order_id] is not None
    elif change == "add":
        predicted.tools.db.orders["#new"] = predicted.tools.db.orders[order_id]
    elif change == "delete":
        del predicted.tools.db.orders[order_id]
    elif change == "write-back":
        predicted.tools.db.orders[order_id].status = "cancelled"
    snapshot = shared.fingerprint(gold.tools.db)
    assert isinstance(snapshot, cow.Snapshot)
    assert shared.matches(predicted.tools.db, snapshot) is _same_by_hash("retail", gold, predicted)
    assert shared.matches(gold.tools.db, snapshot) is True
