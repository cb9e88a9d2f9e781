import pytest

from engine import catalog
from engine.errors import ConfigError


@pytest.mark.parametrize(
    ("domain", "count"), [("telecom", 114), ("airline", 50), ("retail", 114), ("mock", 9)]
)
def test_default_task_sets_have_tau2_sizes(domain: str, count: int) -> None:
    assert len(catalog.task_set(domain).tasks) == count


def test_task_set_is_loaded_once() -> None:
    assert catalog.task_set("telecom") is catalog.task_set("telecom")


def test_unknown_domain_lists_valid_domains() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown domain 'airlin'; expected one of airline, mock, retail, telecom"
    ):
        catalog.check_domain("airlin")


def test_unknown_task_id_names_it() -> None:
    with pytest.raises(ConfigError, match=r"unknown task_id 'no-such-task' in domain 'telecom'"):
        catalog.get_task("telecom", "no-such-task")


def test_unknown_split_lists_valid_splits() -> None:
    with pytest.raises(ConfigError, match=r"unknown split 'nope'.*train"):
        catalog.task_set("airline", "nope")


def test_splits_select_subsets() -> None:
    train = catalog.task_set("airline", "train")
    assert 0 < len(train.tasks) < 50


@pytest.mark.parametrize(("domain", "solo"), [("telecom", True), ("airline", False), ("retail", False)])
def test_solo_mode_follows_tickets(domain: str, solo: bool) -> None:
    assert all(catalog.supports_solo(t) == solo for t in catalog.task_set(domain).tasks)
