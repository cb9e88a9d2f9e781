import logging

import pytest

from engine.config import plan_episodes, spec_from_data
from engine.errors import ConfigError

TELECOM = "[mobile_data_issue]airplane_mode_on|data_mode_off[PERSONA:None]"


def test_data_defaults_to_telecom_solo_oracle() -> None:
    spec = spec_from_data({"task_id": TELECOM})
    assert (spec.domain, spec.solo_mode, spec.policy.name) == ("telecom", True, "oracle")


def test_gconfig_overrides_sampling_with_areals_token_meanings() -> None:
    gconfig = {"temperature": 0.3, "top_p": 0.9, "max_new_tokens": 64, "max_tokens": 4096, "seed": 7}
    s = spec_from_data({"task_id": TELECOM, "gconfig": gconfig}).policy.sampling
    assert (s.temperature, s.top_p, s.seed) == (0.3, 0.9, 7)
    assert (s.max_completion_tokens, s.max_total_tokens) == (64, 4096)  # per call, whole budget
    s = spec_from_data({"task_id": TELECOM, "gconfig": {"max_completion_tokens": 32}}).policy.sampling
    assert (s.max_completion_tokens, s.max_total_tokens) == (32, None)


def test_unused_gconfig_fields_are_accepted_and_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    data = {"task_id": TELECOM, "gconfig": {"top_k": 100000000, "greedy": False, "n_samples": 8}}
    with caplog.at_level(logging.WARNING, logger="engine.config"):
        for _ in range(3):
            assert spec_from_data(data).policy.sampling.temperature == 1.0
    reports = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert reports == [
        "data['gconfig']: fields not used by tau2-engine (accepted, ignored): greedy, n_samples, top_k"
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"domain": "nope", "task_id": "x"},
            r"unknown domain 'nope'; expected one of airline, mock, retail, telecom",
        ),
        ({"domain": "telecom"}, r"missing required field 'task_id'"),
        ({"task_id": "no-such-task"}, r"unknown task_id 'no-such-task'"),
        ({"task_id": TELECOM, "max_steps": 0}, r"max_steps must be >= 1, got 0"),
        ({"task_id": TELECOM, "seed": "x"}, r"seed must be an integer"),
        (
            {"task_id": TELECOM, "policy": "gpt"},
            r"unknown policy 'gpt'; expected one of noisy-oracle, openai, oracle",
        ),
        ({"task_id": TELECOM, "gconfig": {"temperature": "hot"}}, r"gconfig.temperature must be a number"),
        ({"task_id": TELECOM, "gconfig": {"top_p": 0}}, r"gconfig.top_p must be > 0"),
        (
            {"domain": "airline", "task_id": "0", "solo_mode": True},
            r"solo_mode=true needs a task with a ticket",
        ),
        ({"task_id": TELECOM, "solo_mode": "maybe"}, r"solo_mode must be true or false"),
    ],
    ids=[
        "domain",
        "task-missing",
        "task-unknown",
        "max-steps",
        "seed-type",
        "policy",
        "gconfig-value",
        "top-p",
        "solo-airline",
        "solo-type",
    ],
)
def test_bad_data_raises_value_error_naming_field(data: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec_from_data(data)


def test_non_dict_data_is_rejected() -> None:
    with pytest.raises(ConfigError, match="data must be a dict, got list"):
        spec_from_data([1, 2])


def test_plan_repeats_each_task_n_samples_times() -> None:
    specs = plan_episodes(domain="airline", limit=3, n_samples=2)
    assert [(s.task_id, s.sample) for s in specs] == [(t, k) for t in ("0", "1", "2") for k in (0, 1)]
    assert not any(s.solo_mode for s in specs)
