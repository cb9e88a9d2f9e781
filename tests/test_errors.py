"""Every error the engine raises survives a pickle round trip (AReaL's subprocess mode
sends a workflow's exception back through a process pool)."""

from __future__ import annotations

import pickle

import pytest

import engine.errors
from engine.agent import EpisodeStop
from engine.episode import EpisodeDeadline
from engine.errors import ConfigError, EngineError, EpisodeDiscarded
from engine.results import EpisodeResult, Status

RESULT = EpisodeResult(
    episode_id="e1", domain="airline", task_id="0", sample=2, reward=0.0, status=Status.TIMEOUT,
    reward_info={"reward": 0.0, "info": {"note": "x"}}, error="episode deadline passed",
    error_type="EpisodeDeadline", model_calls=3,
)


def _all_subclasses(cls: type) -> set[type]:
    out = set(cls.__subclasses__())
    for sub in list(out):
        out |= _all_subclasses(sub)
    return out


def _example(cls: type[BaseException]) -> BaseException:
    if issubclass(cls, EpisodeDiscarded):
        return cls(RESULT)
    return cls(f"a {cls.__name__} message")


ERRORS = sorted(_all_subclasses(EngineError) | {EngineError, EpisodeStop, EpisodeDeadline}, key=str)


@pytest.mark.parametrize("cls", ERRORS, ids=[c.__name__ for c in ERRORS])
def test_every_engine_error_survives_a_pickle_round_trip(cls: type[BaseException]) -> None:
    error = _example(cls)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls and str(copy) == str(error)
    if isinstance(error, EpisodeDiscarded):
        assert isinstance(copy, EpisodeDiscarded) and copy.result == RESULT


def test_the_tree_covers_every_error_class_of_the_module() -> None:
    declared = {v for v in vars(engine.errors).values() if isinstance(v, type) and issubclass(v, Exception)}
    assert declared <= set(ERRORS)


def test_config_error_choice_survives_pickling() -> None:
    error = ConfigError.choice("domain", "airlin", ("airline", "retail"))
    assert str(pickle.loads(pickle.dumps(error))) == str(error)
