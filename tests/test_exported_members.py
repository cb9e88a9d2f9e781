import engine


def test_all_is_sorted_and_complete() -> None:
    assert engine.__all__ == sorted(engine.__all__)
    for name in engine.__all__:
        assert hasattr(engine, name), name


def test_public_names_are_pinned() -> None:
    expected = {
        "ConfigError",
        "Engine",
        "EngineConfig",
        "EpisodeDiscarded",
        "EpisodeResult",
        "EpisodeSpec",
        "Status",
        "run_agent_return_reward",
        "run_agent_return_reward_sync",
    }
    assert expected <= set(engine.__all__)


def test_every_public_name_has_a_home() -> None:
    assert set(engine._HOMES) == set(engine.__all__)
