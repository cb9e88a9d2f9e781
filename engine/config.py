"""Configuration: the one place where CLI flags, `data` dicts and environment variables
become frozen config objects. Everything past this module trusts its input."""

from __future__ import annotations

import logging
import math
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from engine import catalog, taskdata
from engine.errors import ConfigError

POLICIES: tuple[str, ...] = ("noisy-oracle", "openai", "oracle")
OFFLINE_POLICIES: tuple[str, ...] = ("noisy-oracle", "oracle")
BACKENDS: tuple[str, ...] = ("aenv", "aenv-local", "local")
USERS: tuple[str, ...] = ("llm", "scripted")
DEFAULT_MAX_STEPS = 200  # tau2's DEFAULT_MAX_STEPS
DEFAULT_MAX_ERRORS = 10  # tau2's DEFAULT_MAX_ERRORS
DEFAULT_REQUEST_TIMEOUT_S = 600.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_USER_MAX_TOKENS = 2048

POLICY_TIMEOUT_ENV = "TAU2_ENGINE_REQUEST_TIMEOUT"
POLICY_RETRIES_ENV = "TAU2_ENGINE_MAX_RETRIES"
USER_TIMEOUT_ENV = "TAU2_USER_LLM_TIMEOUT"
USER_RETRIES_ENV = "TAU2_USER_LLM_MAX_RETRIES"
USER_MAX_TOKENS_ENV = "TAU2_USER_LLM_MAX_TOKENS"


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """Sampling parameters sent with every model request (AReaL's names and meanings)."""

    temperature: float = 1.0
    """Softmax temperature (the original example's default 1.0)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_completion_tokens: int = 8192
    """Completion token limit of one model call (AReaL's `max_new_tokens`; sent as
    `max_tokens`, as stock tau2 sends it)."""
    max_total_tokens: int | None = None
    """Prompt-plus-completion budget of the conversation (AReaL's `max_tokens`): a call is
    capped to what is left of it, and an episode whose conversation has used it up ends
    agent_error (context overflow) without another call. None: no budget."""
    seed: int | None = None
    """Sampling seed forwarded to the endpoint, if any."""
    extra_body: Mapping[str, Any] | None = None
    """Extra JSON fields of every request, e.g. {"chat_template_kwargs": {...}}."""


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """An OpenAI-compatible chat-completions endpoint."""

    base_url: str
    """Base URL, e.g. http://127.0.0.1:8000/v1."""
    api_key: str = "EMPTY"
    """Bearer token sent as Authorization."""
    model: str = "default"
    """Model name sent in each request."""
    timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    """Deadline of one HTTP request (a timeout is retried like a 5xx)."""
    max_retries: int = DEFAULT_MAX_RETRIES
    """Retries of a call after transient failures (connection, timeout, 429, 5xx)."""
    backoff_s: float = 0.5
    """Base of the exponential retry backoff (attempt n waits up to backoff_s * 2**n)."""


@dataclass(frozen=True, kw_only=True)
class PolicyConfig:
    """Which policy drives the agent and how."""

    name: str = "oracle"
    """One of POLICIES."""
    latency_ms: float = 0.0
    """Simulated latency per model call for the scripted policies."""
    noise: float = 0.25
    """noisy-oracle: probability of dropping or perturbing each gold action."""
    endpoint: Endpoint | None = None
    """openai: the model endpoint."""
    sampling: Sampling = field(default_factory=Sampling)
    """openai: sampling parameters."""


@dataclass(frozen=True, kw_only=True)
class UserConfig:
    """The simulated user of non-solo episodes."""

    kind: str = "scripted"
    """One of USERS."""
    endpoint: Endpoint | None = None
    """llm: the user model endpoint."""
    max_tokens: int = DEFAULT_USER_MAX_TOKENS
    """llm: completion token limit of one user-simulator call."""
    litellm_model: str | None = None
    """llm without an endpoint: a litellm model string (e.g. `openai/gpt-4.1`) for tau2's
    own user simulator, which finds its API base and key the way litellm does (e.g.
    OPENAI_API_KEY, OPENAI_BASE_URL), as AEnvironment's tau2 env does."""
    request_args: Mapping[str, Any] | None = None
    """llm: extra request fields (AReaL's `user_llm_args`, e.g. temperature,
    max_completion_tokens); temperature defaults to tau2's 0."""


@dataclass(frozen=True, kw_only=True)
class EpisodeSpec:
    """One episode to run."""

    domain: str
    """tau2 domain."""
    task_id: str
    """Task id within the domain's task set."""
    sample: int = 0
    """Sample index (0..n_samples-1) of this task in the run."""
    split: str | None = None
    """Task split the task was taken from (None: tau2's default set)."""
    solo_mode: bool = True
    """Agent works alone from the ticket (True) or talks to a simulated user."""
    max_steps: int = DEFAULT_MAX_STEPS
    """tau2 step budget (messages and tool-result batches)."""
    max_errors: int = DEFAULT_MAX_ERRORS
    """tau2 tool-error budget."""
    seed: int = 0
    """Episode seed (noisy-oracle choices, sampling seed)."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """The policy driving the agent."""
    user: UserConfig = field(default_factory=UserConfig)
    """The simulated user (non-solo only)."""
    timeout_s: float | None = None
    """Episode deadline in seconds (None: no deadline)."""
    think_tool: bool = False
    """Offer the agent AReaL's `think` tool (answered by the engine, not the environment)."""
    data_dir: str | None = None
    """Task data directory in tau2-bench's layout (None: the package's data; see
    engine.taskdata)."""
    judge: Endpoint | None = None
    """The NL-assertion judge (tasks scored on NL_ASSERTION need one; engine.judge)."""

    @property
    def key(self) -> tuple[str, str, int, int, str]:
        """(domain, task, sample, seed, policy): how --resume matches episodes recorded
        without a fingerprint (engine.fingerprint) by an older engine."""
        return (self.domain, self.task_id, self.sample, self.seed, self.policy.name)


@dataclass(frozen=True, kw_only=True)
class AenvConfig:
    """How the `aenv` and `aenv-local` backends reach tau2 environments."""

    env_name: str = "tau2-env@1.0.0"
    """AEnvironment env name@version (TAU2_ENGINE_AENV_ENV)."""
    system_url: str | None = None
    """AEnvironment scheduler URL (AENV_SYSTEM_URL; None: the SDK's default)."""
    ttl: str = "30m"
    """Lifetime of a remote sandbox (TAU2_ENGINE_AENV_TTL)."""
    create_attempts: int = 3
    """Attempts to create a remote sandbox before the episode fails infra_error."""
    create_backoff_s: float = 1.0
    """Base of the create-retry backoff (attempt n waits backoff * 2**n plus jitter, <= 30 s)."""
    call_timeout_s: float = 60.0
    """Deadline of one call to an environment (tool, function, reward)."""
    release_timeout_s: float = 10.0
    """Deadline of releasing a sandbox (runs shielded, also on cancellation)."""
    startup_timeout_s: float = 120.0
    """aenv-local: deadline for a new local server to answer its health check."""


def aenv_from_env() -> AenvConfig:
    """AenvConfig from AENV_SYSTEM_URL, TAU2_ENGINE_AENV_ENV and TAU2_ENGINE_AENV_TTL."""
    return AenvConfig(
        env_name=os.environ.get("TAU2_ENGINE_AENV_ENV") or AenvConfig.env_name,
        system_url=os.environ.get("AENV_SYSTEM_URL") or None,
        ttl=os.environ.get("TAU2_ENGINE_AENV_TTL") or AenvConfig.ttl,
    )


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """How the engine runs a batch of episodes."""

    concurrency: int = 32
    """Episodes in flight at once."""
    max_envs: int | None = None
    """Environments open at once (None: same as concurrency)."""
    max_model_calls: int | None = None
    """Model calls in flight at once (None: same as concurrency)."""
    cpu_workers: int = 2
    """Threads for CPU-heavy tau2 work (environment setup, scoring)."""
    backend: str = "local"
    """One of BACKENDS."""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    """Identifier stamped on every event of the run."""
    aenv: AenvConfig = field(default_factory=aenv_from_env)
    """The aenv backends' settings."""

    @property
    def env_slots(self) -> int:
        return self.max_envs or self.concurrency

    @property
    def model_slots(self) -> int:
        return self.max_model_calls or self.concurrency


def check_choice(name: str, value: object, valid: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ConfigError.choice(name, value, valid)
    return value


def check_int(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_float(name: str, value: object, *, minimum: float, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        op = ">" if strict else ">="
        raise ConfigError(f"{name} must be {op} {minimum}, got {value}")
    return float(value)


def check_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def require_endpoint(policy: PolicyConfig) -> Endpoint:
    """The endpoint of a policy that needs one (`openai`)."""
    if policy.endpoint is None:
        raise ConfigError(
            "policy 'openai' needs a model endpoint: pass --base-url (base_url=) or set "
            f"OPENAI_BASE_URL; offline policies: {', '.join(OFFLINE_POLICIES)}"
        )
    return policy.endpoint


def _env_value(name: str, check: Any, **bounds: Any) -> Any:
    text = os.environ.get(name)
    if not text:
        return None
    try:
        value = float(text) if check is check_float else int(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {text!r}") from None
    return check(name, value, **bounds)


def request_options(
    *, timeout_s: object = None, max_retries: object = None, user: bool = False
) -> dict[str, Any]:
    """Endpoint request timeout and retry budget: the given values (flags, kwargs, `data`),
    else the environment (TAU2_ENGINE_REQUEST_TIMEOUT / TAU2_ENGINE_MAX_RETRIES for the
    policy, TAU2_USER_LLM_TIMEOUT / TAU2_USER_LLM_MAX_RETRIES for the user), else the
    defaults. Returns the Endpoint fields to set."""
    timeout_env, retries_env = (USER_TIMEOUT_ENV, USER_RETRIES_ENV) if user else (
        POLICY_TIMEOUT_ENV, POLICY_RETRIES_ENV)
    who = "user_" if user else ""
    out: dict[str, Any] = {}
    if timeout_s is None:
        timeout_s = _env_value(timeout_env, check_float, minimum=0, strict=True)
    else:
        timeout_s = check_float(f"{who}request_timeout", timeout_s, minimum=0, strict=True)
    if timeout_s is not None:
        out["timeout_s"] = timeout_s
    if max_retries is None:
        max_retries = _env_value(retries_env, check_int, minimum=0)
    else:
        max_retries = check_int(f"{who}max_retries", max_retries, minimum=0)
    if max_retries is not None:
        out["max_retries"] = max_retries
    return out


def model_name(name: str) -> str:
    """A model name as sent to the endpoint; litellm-style `openai/<model>` (as in the
    original example's TAU2_USER_LLM) names `<model>` on an OpenAI-compatible endpoint."""
    return name.removeprefix("openai/") or name


def endpoint_from_env(model: str | None = None, **options: Any) -> Endpoint | None:
    """The policy endpoint from OPENAI_BASE_URL / OPENAI_API_KEY, if set."""
    base_url = os.environ.get("OPENAI_BASE_URL")
    if not base_url:
        return None
    return Endpoint(
        base_url=base_url,
        api_key=os.environ.get("OPENAI_API_KEY") or "EMPTY",
        model=model_name(model or os.environ.get("OPENAI_MODEL") or "default"),
        **request_options(**options),
    )


def policy_from_env() -> PolicyConfig:
    """The hook's default policy: openai when OPENAI_BASE_URL is set, else oracle."""
    endpoint = endpoint_from_env()
    return PolicyConfig(name="openai", endpoint=endpoint) if endpoint else PolicyConfig()


def user_from_env(
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout_s: object = None,
    max_retries: object = None,
    max_tokens: object = None,
) -> UserConfig:
    """The LLM user simulator from the given values, else TAU2_USER_LLM,
    TAU2_USER_LLM_API_BASE, TAU2_USER_LLM_API_KEY (the original example's variables) and
    TAU2_USER_LLM_TIMEOUT / _MAX_RETRIES / _MAX_TOKENS; the scripted user when no model
    or base URL is configured."""
    model = model or os.environ.get("TAU2_USER_LLM")
    base_url = base_url or os.environ.get("TAU2_USER_LLM_API_BASE")
    if not model or not base_url:
        return UserConfig()
    if max_tokens is None:
        max_tokens = _env_value(USER_MAX_TOKENS_ENV, check_int, minimum=1) or DEFAULT_USER_MAX_TOKENS
    return UserConfig(
        kind="llm",
        endpoint=Endpoint(
            base_url=base_url,
            api_key=api_key or os.environ.get("TAU2_USER_LLM_API_KEY") or "EMPTY",
            model=model_name(model),
            **request_options(timeout_s=timeout_s, max_retries=max_retries, user=True),
        ),
        max_tokens=check_int("user_max_tokens", max_tokens, minimum=1),
    )


def data_dir_from_env() -> str | None:
    """The task data directory from TAU2_DATA_DIR (None: the package's data)."""
    return taskdata.check_data_dir(os.environ.get("TAU2_DATA_DIR") or None)


JUDGE_VARIABLES = ("TAU2_JUDGE_MODEL", "TAU2_JUDGE_BASE_URL", "TAU2_JUDGE_API_KEY")


def judge_endpoint(model: str | None, base_url: str | None, api_key: str | None) -> Endpoint | None:
    """The NL-assertion judge: both a model and an endpoint, or neither."""
    if not model and not base_url:
        return None
    if not model:
        raise ConfigError(
            "a judge endpoint needs a judge model: pass --judge-model or set TAU2_JUDGE_MODEL"
        )
    if not base_url:
        raise ConfigError(
            f"judge model {model!r} needs an endpoint: pass --judge-base-url or set TAU2_JUDGE_BASE_URL"
        )
    return Endpoint(base_url=base_url, api_key=api_key or "EMPTY", model=model)


def judge_from_env() -> Endpoint | None:
    """The judge from TAU2_JUDGE_MODEL, TAU2_JUDGE_BASE_URL and TAU2_JUDGE_API_KEY."""
    return judge_endpoint(*(os.environ.get(name) or None for name in JUDGE_VARIABLES))


def _data_dir_of(data: Mapping[str, Any]) -> str | None:
    """`data["data_dir"]`, else AReaL's `data["econfig"]["data_dir"]`, else TAU2_DATA_DIR."""
    if "data_dir" in data:
        return taskdata.check_data_dir(data["data_dir"])
    econfig = data.get("econfig")
    if econfig is not None and not isinstance(econfig, Mapping):
        raise ConfigError(f"econfig must be a mapping, got {type(econfig).__name__}")
    if econfig is not None and "data_dir" in econfig:
        return taskdata.check_data_dir(econfig["data_dir"])
    return data_dir_from_env()


GCONFIG_FIELDS: tuple[str, ...] = (
    "extra_body", "max_completion_tokens", "max_new_tokens", "max_tokens", "seed",
    "temperature", "top_p",
)
"""Sampling fields the engine uses, from AReaL's GenerationHyperparameters (`gconfig`) or
OpenAI-style request arguments (`gen_args`): `max_new_tokens` / `max_completion_tokens`
limit one call, `max_tokens` is the prompt-plus-completion budget."""


def sampling_from(gconfig: object, base: Sampling, *, unused: set[str] | None = None) -> Sampling:
    """`base` updated by a gconfig / gen_args mapping. Fields the engine does not use (AReaL's
    `top_k`, `n_samples`, `greedy`, ...) are added to `unused`, never an error; a bad value of
    a used field is."""
    if gconfig is None:
        return base
    if not isinstance(gconfig, Mapping):
        raise ConfigError(f"gconfig must be a mapping, got {type(gconfig).__name__}")
    out = base
    for key, value in gconfig.items():
        if key not in GCONFIG_FIELDS:
            if unused is not None:
                unused.add(str(key))
            continue
        if value is None:
            continue
        if key == "temperature":
            out = replace(out, temperature=check_float("gconfig.temperature", value, minimum=0))
        elif key == "top_p":
            out = replace(out, top_p=check_float("gconfig.top_p", value, minimum=0, strict=True))
        elif key in ("max_new_tokens", "max_completion_tokens"):
            out = replace(out, max_completion_tokens=check_int(f"gconfig.{key}", value, minimum=1))
        elif key == "max_tokens":
            out = replace(out, max_total_tokens=check_int("gconfig.max_tokens", value, minimum=2))
        elif key == "seed":
            out = replace(out, seed=check_int("gconfig.seed", value, minimum=0))
        elif key == "extra_body":
            if not isinstance(value, Mapping):
                raise ConfigError(f"gconfig.extra_body must be a mapping, got {value!r}")
            out = replace(out, extra_body={**(out.extra_body or {}), **value})
    return out


def report_unused(source: str, names: set[str]) -> None:
    """Say once per process and source which given fields the engine does not use."""
    if not names:
        return
    key = (source, frozenset(names))
    with _reported_lock:
        if key in _reported:
            return
        _reported.add(key)
    _log.warning(
        "%s: fields not used by tau2-engine (accepted, ignored): %s", source, ", ".join(sorted(names))
    )


_log = logging.getLogger("engine.config")
_reported: set[tuple[str, frozenset[str]]] = set()
_reported_lock = threading.Lock()


def spec_from_data(
    data: object,
    *,
    default_policy: PolicyConfig | None = None,
    default_user: UserConfig | None = None,
) -> EpisodeSpec:
    """Validate an AReaL `data` dict and turn it into an EpisodeSpec."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"data must be a dict, got {type(data).__name__}")
    domain = catalog.check_domain(data.get("domain", catalog.DEFAULT_DOMAIN))
    if "task_id" not in data:
        raise ConfigError("data is missing required field 'task_id'")
    split = data.get("split")
    if split is not None and not isinstance(split, str):
        raise ConfigError(f"split must be a string, got {split!r}")
    data_dir = _data_dir_of(data)
    task = catalog.get_task(domain, data["task_id"], split, data_dir)
    seed = check_int("seed", data.get("seed", 0), minimum=0)
    policy = default_policy or PolicyConfig()
    if "policy" in data:
        policy = replace(policy, name=check_choice("policy", data["policy"], POLICIES))
    unused: set[str] = set()
    policy = replace(policy, sampling=sampling_from(data.get("gconfig"), policy.sampling, unused=unused))
    report_unused("data['gconfig']", unused)
    if policy.name == "openai":
        endpoint = require_endpoint(policy)
        overrides = {k: data[k] for k in ("request_timeout", "max_retries") if data.get(k) is not None}
        if overrides:
            options = request_options(
                timeout_s=overrides.get("request_timeout"), max_retries=overrides.get("max_retries")
            )
            policy = replace(policy, endpoint=replace(endpoint, **options))
    solo_mode = _solo_mode(task, data.get("solo_mode"), policy)
    if default_user is None:
        default_user = user_from_env() if solo_mode else standard_user(policy)
    timeout = data.get("timeout")
    return EpisodeSpec(
        domain=domain,
        task_id=task.id,
        split=split,
        sample=check_int("sample", data.get("sample", 0), minimum=0),
        solo_mode=solo_mode,
        max_steps=check_int("max_steps", data.get("max_steps", DEFAULT_MAX_STEPS), minimum=1),
        seed=seed,
        policy=policy,
        user=default_user,
        timeout_s=None if timeout is None else check_float("timeout", timeout, minimum=0, strict=True),
        data_dir=data_dir,
        judge=judge_from_env(),
    )


def _solo_mode(task: Any, requested: object, policy: PolicyConfig | None = None) -> bool:
    if requested is None:
        if policy is not None and policy.name not in OFFLINE_POLICIES:
            return False  # tau2's standard setting: the agent talks to a simulated user
        return catalog.default_solo_mode(task)
    solo = check_bool("solo_mode", requested)
    if solo and not catalog.supports_solo(task):
        raise ConfigError(
            f"solo_mode=true needs a task with a ticket; task {task.id!r} has none "
            "(use solo_mode=false: the agent talks to a simulated user)"
        )
    return solo


def standard_user(policy: PolicyConfig, **llm: Any) -> UserConfig:
    """The user of a run that did not name one: tau2's LLM user simulator for a real
    policy (from `llm` or TAU2_USER_LLM*), the scripted user for offline policies."""
    user = user_from_env(**llm)
    if policy.name not in OFFLINE_POLICIES and user.kind != "llm":
        raise ConfigError(
            "a real policy talks to tau2's LLM user simulator (non-solo, tau2's standard "
            "setting): pass --user-model and --user-base-url (or set TAU2_USER_LLM and "
            "TAU2_USER_LLM_API_BASE); --user scripted runs it against the scripted user, "
            "--solo on (data: solo_mode=true) runs tasks with a ticket solo"
        )
    return user


def check_spec(spec: EpisodeSpec) -> None:
    """Raise ConfigError naming the first bad value of `spec` and what is valid: its task
    (domain, split, task id, data directory), policy, user and budgets. Blocking: the first
    look-up of a task set parses its files."""
    catalog.get_task(spec.domain, spec.task_id, spec.split, spec.data_dir)
    check_choice("policy", spec.policy.name, POLICIES)
    if spec.policy.name == "openai":
        require_endpoint(spec.policy)
    if not spec.solo_mode:
        check_choice("user", spec.user.kind, USERS)
        if spec.user.kind == "llm" and spec.user.endpoint is None and not spec.user.litellm_model:
            raise ConfigError(
                "user 'llm' needs an endpoint: pass --user-model and --user-base-url (or set "
                "TAU2_USER_LLM and TAU2_USER_LLM_API_BASE)"
            )
    check_int("max_steps", spec.max_steps, minimum=1)
    check_int("max_errors", spec.max_errors, minimum=1)
    if spec.timeout_s is not None:
        check_float("timeout", spec.timeout_s, minimum=0, strict=True)


def spec_shape(spec: EpisodeSpec) -> tuple[object, ...]:
    """What `check_spec` looks at: specs of one shape (e.g. the samples of a task) pass or
    fail together."""
    policy, user = spec.policy, spec.user
    return (
        spec.domain, spec.task_id, spec.split, spec.data_dir, spec.solo_mode, spec.max_steps,
        spec.max_errors, spec.timeout_s, policy.name, policy.endpoint is None, user.kind,
        user.endpoint is None, user.litellm_model,
    )


def check_specs(specs: Iterable[EpisodeSpec], checked: set[tuple[object, ...]] | None = None) -> None:
    """`check_spec` for every distinct shape among `specs` not already in `checked`; the
    shapes that pass are added to it."""
    seen = checked if checked is not None else set()
    for spec in specs:
        shape = spec_shape(spec)
        if shape not in seen:
            check_spec(spec)
            seen.add(shape)


def plan_episodes(
    *,
    domain: str,
    task_ids: list[str] | None = None,
    split: str | None = None,
    limit: int | None = None,
    n_samples: int = 1,
    solo_mode: bool | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    seed: int = 0,
    policy: PolicyConfig | None = None,
    user: UserConfig | None = None,
    timeout_s: float | None = None,
    data_dir: str | None = None,
    judge: Endpoint | None = None,
) -> list[EpisodeSpec]:
    """The episodes of a run: each selected task `n_samples` times, task-major order.

    `solo_mode` None: non-solo for a real policy (tau2's standard setting), tasks with a
    ticket solo for offline policies. `user` None: `standard_user(policy)`.
    `data_dir`: task data directory (None: the package's data); `judge`: the NL-assertion
    judge."""
    catalog.check_domain(domain)
    check_int("n_samples", n_samples, minimum=1)
    check_int("max_steps", max_steps, minimum=1)
    check_int("seed", seed, minimum=0)
    if limit is not None:
        check_int("limit", limit, minimum=1)
    if timeout_s is not None:
        check_float("timeout", timeout_s, minimum=0, strict=True)
    data_dir = taskdata.check_data_dir(data_dir)
    if task_ids:
        tasks = [catalog.get_task(domain, t, split, data_dir) for t in task_ids]
    else:
        tasks = list(catalog.task_set(domain, split, data_dir).tasks)
    if limit is not None:
        tasks = tasks[:limit]
    specs = []
    solos = [_solo_mode(task, solo_mode, policy) for task in tasks]
    if user is None:
        user = standard_user(policy or PolicyConfig()) if not all(solos) else UserConfig()
    for task, solo in zip(tasks, solos, strict=True):
        for sample in range(n_samples):
            specs.append(
                EpisodeSpec(
                    domain=domain,
                    task_id=task.id,
                    split=split,
                    sample=sample,
                    solo_mode=solo,
                    max_steps=max_steps,
                    seed=seed,
                    policy=policy or PolicyConfig(),
                    user=user,
                    timeout_s=timeout_s,
                    data_dir=data_dir,
                    judge=judge,
                )
            )
    return specs
