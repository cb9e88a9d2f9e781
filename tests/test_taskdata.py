"""Task data from a directory in tau2-bench's layout, file by file over the package's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine import catalog, taskdata, tau2lib
from engine.envs import tau2_cache
from engine.errors import ConfigError

V101 = str(Path(__file__).parent / "data" / "tau2-v1.0.1")
SHARED_V101 = Path("/work/shared/tau2-data-v1.0.1")
MODES = [("airline", False), ("retail", False), ("mock", False), ("mock", True), ("telecom", False),
         ("telecom", True)]  # fmt: skip


@pytest.mark.parametrize("domain", catalog.DOMAINS)
def test_package_tasks_and_splits_load_as_tau2s_registry_does(domain: str) -> None:
    registry = tau2lib.load().registry
    assert taskdata.load_tasks(None, domain, None) == registry.get_tasks_loader(domain)()
    loader = registry.get_task_splits_loader(domain)
    splits = loader() if loader is not None else {}  # the registry gives mock no splits
    assert taskdata.splits(None, domain) == splits
    for split in ("test",):
        if split in splits:
            assert taskdata.load_tasks(None, domain, split) == registry.get_tasks_loader(domain)(split)


@pytest.mark.parametrize(
    ("domain", "solo_mode"), MODES, ids=[f"{d}-{'solo' if s else 'dual'}" for d, s in MODES]
)
def test_package_policy_is_the_one_tau2s_constructor_reads(domain: str, solo_mode: bool) -> None:
    stock = tau2lib.load().registry.get_env_constructor(domain)(solo_mode=solo_mode)
    assert taskdata.policy(None, domain, solo_mode) == stock.get_policy()
    assert tau2_cache.new_environment(domain, solo_mode=solo_mode).get_policy() == stock.get_policy()


def test_missing_files_fall_back_to_the_package_and_are_named() -> None:
    data_dir = taskdata.check_data_dir(V101)
    airline = taskdata.domain_files(data_dir, "airline")
    assert airline.paths["tasks"] == Path(V101) / "domains" / "airline" / "tasks.json"
    assert airline.paths["db"] == taskdata.package_dir("airline") / "db.json"
    assert "db.json" in airline.fallbacks and "tasks.json" not in airline.fallbacks
    telecom = taskdata.domain_files(data_dir, "telecom")
    assert telecom.paths["tasks"] == taskdata.package_dir("telecom") / "tasks.json"


def test_v101_tasks_differ_from_the_package_where_upstream_fixed_them() -> None:
    data_dir = taskdata.check_data_dir(V101)
    new = catalog.task_set("retail", None, data_dir).by_id
    old = catalog.task_set("retail").by_id
    assert [a.name for a in new["12"].evaluation_criteria.actions][-1] == "transfer_to_human_agents"
    assert new["12"].evaluation_criteria.actions != old["12"].evaluation_criteria.actions
    assert {b.value for b in new["12"].evaluation_criteria.reward_basis} == {"DB", "NL_ASSERTION"}
    assert {b.value for b in old["12"].evaluation_criteria.reward_basis} == {"DB", "COMMUNICATE"}
    assert taskdata.data_hash(data_dir, "retail") != taskdata.data_hash(None, "retail")
    assert taskdata.data_hash(data_dir, "telecom") == taskdata.data_hash(None, "telecom")  # same files


def test_content_hash_depends_on_content_not_on_where_the_files_live(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(taskdata.package_dir("mock"), copy / "domains" / "mock")
    same = taskdata.check_data_dir(str(copy))
    assert taskdata.data_hash(same, "mock") == taskdata.data_hash(None, "mock")
    changed = tmp_path / "changed"
    (changed / "domains" / "mock").mkdir(parents=True)
    (changed / "domains" / "mock" / "policy.md").write_text("A different mock policy.")
    other = taskdata.check_data_dir(str(changed))
    assert taskdata.data_hash(other, "mock") != taskdata.data_hash(None, "mock")
    env = tau2_cache.new_environment("mock", solo_mode=False, data_dir=other)
    assert env.get_policy() == "A different mock policy."
    assert catalog.task_set("mock", None, other).ids == catalog.task_set("mock").ids


@pytest.mark.skipif(not SHARED_V101.is_dir(), reason=f"no full v1.0.1 copy at {SHARED_V101}")
@pytest.mark.parametrize("domain", catalog.DOMAINS)
def test_vendored_v101_subset_is_the_full_v101_copy(domain: str) -> None:
    full = taskdata.check_data_dir(str(SHARED_V101))
    assert taskdata.data_hash(taskdata.check_data_dir(V101), domain) == taskdata.data_hash(full, domain)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("/nonexistent/tau2-data", "is not a directory"),
        (str(Path(__file__).parent), "not in tau2-bench's layout"),
    ],
    ids=["missing", "wrong-layout"],
)
def test_bad_data_dir_is_one_clear_error(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        taskdata.check_data_dir(value)
    assert value in str(info.value)


def test_upstream_checkout_layouts_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "data" / "tau2" / "domains" / "mock").mkdir(parents=True)
    assert taskdata.check_data_dir(str(tmp_path)) == str(tmp_path.resolve())
