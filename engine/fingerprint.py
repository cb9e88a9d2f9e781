"""The episode fingerprint: one short hash of everything that changes an episode's outcome.

Two episodes with the same fingerprint are attempts at the same thing: `--resume` skips a
planned episode whose fingerprint already has a policy outcome in the events file, and
`analyze` keeps the last attempt of each fingerprint. It covers the task (domain, task id,
split, sample, seed), the task data and evaluator (the comparability stamp's content hash
and tau2 version, engine.stamp), the episode's budgets and mode (max_steps, max_errors,
solo mode, think tool), the policy (name; the model and its sampling for `openai`; the
noise of `noisy-oracle`), the simulated user of a non-solo episode (kind, model, token
limit, request fields) and the judge model of judged tasks.

Left out, as they change how an episode runs but not what it would score: endpoint URLs,
keys, request timeouts and retries, simulated latency, the episode deadline, the data's
path (its content hash counts) and the backend.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from engine import stamp
from engine.config import EpisodeSpec

VERSION = 1
"""Bumped when the hashed fields change, so that old fingerprints never match new ones."""


def fields(spec: EpisodeSpec, episode_stamp: Mapping[str, Any]) -> dict[str, Any]:
    """The outcome-relevant fields of `spec` and its comparability `stamp`, as hashed."""
    policy = spec.policy
    policy_fields: dict[str, Any] = {"name": policy.name}
    if policy.name == "openai":
        policy_fields["model"] = policy.endpoint.model if policy.endpoint is not None else None
        policy_fields["sampling"] = dataclasses.asdict(policy.sampling)
    if policy.name == "noisy-oracle":
        policy_fields["noise"] = policy.noise
    user: dict[str, Any] | None = None
    if not spec.solo_mode:
        user = {
            "kind": spec.user.kind,
            "model": spec.user.endpoint.model if spec.user.endpoint is not None else None,
            "litellm_model": spec.user.litellm_model,
            "max_tokens": spec.user.max_tokens,
            "request_args": spec.user.request_args,
        }
    return {
        "version": VERSION,
        "domain": spec.domain,
        "task_id": spec.task_id,
        "split": spec.split,
        "sample": spec.sample,
        "seed": spec.seed,
        "solo_mode": spec.solo_mode,
        "max_steps": spec.max_steps,
        "max_errors": spec.max_errors,
        "think_tool": spec.think_tool,
        "policy": policy_fields,
        "user": user,
        "data_hash": episode_stamp.get("data_hash"),
        "tau2_version": episode_stamp.get("tau2_version"),
        "judge_model": episode_stamp.get("judge_model"),
    }


def fingerprint(spec: EpisodeSpec, episode_stamp: Mapping[str, Any]) -> str:
    """The episode's fingerprint (16 hex digits) given its comparability stamp."""
    encoded = orjson.dumps(
        fields(spec, episode_stamp), option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=repr
    )
    return hashlib.sha256(encoded).hexdigest()[:16]


def of_spec(spec: EpisodeSpec) -> str:
    """The episode's fingerprint (computes the stamp: the first spec of a data source hashes
    its files, so this blocks)."""
    return fingerprint(spec, stamp.episode_stamp(spec))
