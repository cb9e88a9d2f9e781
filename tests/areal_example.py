"""What AReaL 1.0.4's `examples/tau2` hands a workflow, as data: `asdict(Tau2EnvConfig)` with
the values of `config_8b_airline.yaml`, the `workflow_kwargs` its `train.py` builds, and
the dataset rows of its `get_tau2_dataset`."""

from __future__ import annotations

from typing import Any


def tau2_env_config(**values: Any) -> dict[str, Any]:
    """`asdict(Tau2EnvConfig(**values))` (examples/tau2/utils.py): every field, defaults
    as AReaL declares them."""
    econfig: dict[str, Any] = {
        "domain": "telecom",
        "max_steps": 100,
        "add_thinking_tool": False,
        "solo_mode": False,
        "user_llm_base_url": None,
        "user_llm": None,
        "user_llm_args": None,
        "turn_discount": 1.0,
        "invalid_format_penalty": 0.1,
    }
    unknown = set(values) - set(econfig)
    if unknown:
        raise TypeError(f"Tau2EnvConfig has no fields {sorted(unknown)}")
    return {**econfig, **values}


def airline_econfig(user_llm_base_url: str, **values: Any) -> dict[str, Any]:
    """The `econfig` of config_8b_airline.yaml (the user LLM's address is the user's)."""
    yaml_values: dict[str, Any] = dict(
        domain="airline",
        max_steps=50,
        add_thinking_tool=False,
        solo_mode=False,
        user_llm_base_url=user_llm_base_url,
        user_llm="openai/self-hosted-Qwen2.5-72B",
        user_llm_args={"temperature": 0.0, "max_completion_tokens": 512},
        turn_discount=1.0,
        invalid_format_penalty=0.1,
    )
    return tau2_env_config(**{**yaml_values, **values})


def workflow_kwargs(
    econfig: dict[str, Any], *, temperature: float = 1.0, max_new_tokens: int = 8192
) -> dict[str, Any]:
    """examples/tau2/train.py: `dict(econfig=asdict(econfig), gen_args=dict(temperature=
    config.gconfig.temperature, max_completion_tokens=config.gconfig.max_new_tokens),
    timeout=600.0)`."""
    return dict(
        econfig=econfig,
        gen_args=dict(temperature=temperature, max_completion_tokens=max_new_tokens),
        timeout=600.0,
    )


def dataset_rows(domain: str, split: str = "train") -> list[dict[str, Any]]:
    """examples/tau2/train.py `get_tau2_dataset`: one `{"task_id", "split"}` per task id of
    the split, from tau2's registry (without its duplication to 128 rows)."""
    from engine import tau2lib

    splits = tau2lib.load().registry.get_task_splits_loader(domain)()
    return [{"task_id": task_id, "split": split} for task_id in splits[split]]
